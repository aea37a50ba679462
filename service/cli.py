"""``xception-serve``: run the service with uvicorn, configured by ``XCEPTION_*`` variables."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING

from artifact.errors import was_interrupted

if TYPE_CHECKING:
    from fastapi import FastAPI

    from service.config.settings import Settings

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    """Validate settings (one line per bad variable, exit 2), load the model (one line and
    exit 1 if it cannot be used; in repository mode models load in the background and
    failures are reported), then serve until SIGTERM/SIGINT. Ctrl-C (SIGINT) exits 130, as
    shells expect of an interrupted command, without a traceback: while starting, with one
    line; while serving, once the drain is done (uvicorn re-raises the signal after it)."""
    try:
        prepared = _prepare(argv)
    except BaseException as exc:  # a Ctrl-C may surface as another exception: see was_interrupted
        if not was_interrupted(exc):
            raise
        print("xception-serve: interrupted while starting; nothing was served", file=sys.stderr)
        return 130
    if isinstance(prepared, int):
        return prepared
    from service.config import slices
    from service.edge.server import serve

    app, settings = prepared
    try:
        serve(app, slices.listening(settings), slices.connections(settings))
    except KeyboardInterrupt:
        return 130
    return 0


def _prepare(argv: list[str] | None) -> tuple[FastAPI, Settings] | int:
    """The app and its settings, ready to serve; or the exit status after one line."""
    # Imported here, inside main's KeyboardInterrupt handler: a Ctrl-C while they load
    # (a second or so) is answered in one line too.
    from pydantic import ValidationError

    from service.config.settings import Settings
    from service.config.startup import describe_validation_error, unknown_variables
    from service.observability.tracing import configure_logging

    argparse.ArgumentParser(
        prog="xception-serve",
        description="Serve an exported model over HTTP (POST /classify, POST /features).",
        epilog="Configured only by XCEPTION_* environment variables; see docs/reference.md.",
    ).parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(
            f"xception-serve: invalid settings: {describe_validation_error(exc)}", file=sys.stderr
        )
        return 2
    configure_logging(settings.log_level, settings.log_format)
    for warning in unknown_variables(os.environ):
        logger.warning(warning)
    from artifact.errors import ModelLoadError
    from service.app import create_app
    from service.config import slices
    from service.edge.protocol import check_uvicorn

    if (problem := check_uvicorn()) is not None:
        print(f"xception-serve: {problem}", file=sys.stderr)
        return 2
    source = slices.source(settings)
    if settings.model_repository is None:  # one model: it must load, or nothing is served
        try:
            source.scan()
        except ModelLoadError as exc:
            print(f"xception-serve: {exc}", file=sys.stderr)
            return 1
    return create_app(settings, source), settings


if __name__ == "__main__":
    sys.exit(main())
