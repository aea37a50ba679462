"""``python -m service.healthcheck``: exit 0 when the local server's ``/readyz`` says 200.

For container HEALTHCHECKs: the runtime image has no curl, and this reads the same
``XCEPTION_PORT`` the server was started with. Standard library only, so it starts fast.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    """0 if ready, 1 otherwise (with the reason on stderr)."""
    port = os.environ.get("XCEPTION_PORT", "8000")
    url = f"http://127.0.0.1:{port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
