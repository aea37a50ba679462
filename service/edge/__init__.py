"""The request's edge: everything that can refuse a request before a protocol reads it.

``server`` (uvicorn's connection limits: header size and time, connection count, the drain
hook) → ``gate`` (``routing``: what the request is and which version it asks for; ``auth``: the
API key; admission through the repository) → ``limits`` (the body's size and time).
``envelope`` answers every refusal, here and deeper, in the error envelope.
"""
