"""``xception-serve``: run the service with uvicorn, configured by ``XCEPTION_*`` variables."""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn
from pydantic import ValidationError

from service.config import Settings, describe_validation_error

# Seconds beyond the request timeout that a SIGTERM drain may take before uvicorn gives up.
DRAIN_GRACE_S = 5.0


def main(argv: list[str] | None = None) -> int:
    """Validate settings (one line per bad variable, exit 2), then serve until SIGTERM/SIGINT."""
    argparse.ArgumentParser(
        prog="xception-serve",
        description="Serve an exported model over HTTP (POST /classify, POST /features).",
        epilog="Configured only by XCEPTION_* environment variables; see the README.",
    ).parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(
            f"xception-serve: invalid settings: {describe_validation_error(exc)}", file=sys.stderr
        )
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from service.app import create_app

    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=int(settings.request_timeout_s + DRAIN_GRACE_S),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
