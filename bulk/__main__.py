"""``python -m bulk``: the same as ``xception-features``."""

from __future__ import annotations

import sys

from bulk.features import main

sys.exit(main())
