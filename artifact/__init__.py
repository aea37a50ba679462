"""The model artifact both stages agree on: card, folder layout, images, preprocessing, runtime.

No torch and no FastAPI here: ``export`` (torch side), ``bulk`` (offline inference) and
``service`` (HTTP) all stand on this package, and it never imports any of them.
"""
