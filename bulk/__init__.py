"""Offline inference over folders of images (``xception-features``), on the artifact layer only.

Runs with the runtime requirements alone (no torch, no FastAPI), so it works in the
service's image and on any machine that can run the model.
"""
