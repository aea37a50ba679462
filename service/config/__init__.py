"""The settings: ``XCEPTION_*`` variables read and checked (``settings``), what start-up says
about them (``startup``), and each part of the service's slice of them (``slices``: imported
by the wiring alone, once the settings are known to be valid)."""
