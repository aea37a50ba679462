"""The inference core, below every protocol: one model version's decode pool, admission
control and dynamic batcher (``inference.InferenceService``), and the drain signal.
Knows nothing of HTTP; refuses by raising :class:`service.errors.ServiceError`."""
