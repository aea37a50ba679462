"""HTTP routes: thin; parameters in, :mod:`service.inference` does the work."""
