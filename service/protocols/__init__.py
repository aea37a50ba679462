"""The ways a client can ask for inference, each turned into calls on the one InferenceService.

``uploads`` (multipart, raw image bodies, JSON base64 for ``/classify`` and ``/features``),
``v2`` + ``v2_codec`` (the Open Inference Protocol, as Triton and KServe speak it), ``openai``
(``/v1/embeddings``), ``image_sources`` (base64, data URIs and allow-listed URLs).
"""
