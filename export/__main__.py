"""``python -m export`` is ``xception-export``."""

from __future__ import annotations

import sys

from export.cli import main

sys.exit(main())
