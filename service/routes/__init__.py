"""HTTP routes: thin; parameters in, a protocol or the inference core does the work, and
the gate (:mod:`service.edge.gate`) already decided which version serves the request."""
