"""The pages a person opens: the try-it page at ``/`` (``service/ui/``) and the API docs,
served from this process only — no CDN, so they work offline and behind a firewall.

Every page answer carries a Content-Security-Policy that allows the service's own origin only
(plus ``data:``/``blob:`` images: the thumbnails of the user's own files). Swagger UI's and
ReDoc's pages start with an inline script; instead of allowing inline scripts, the policy names
the SHA-256 of the exact scripts this server sent.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.policy import PUBLIC, declare, edge

UI_FOLDER = Path(__file__).parent / "ui"
UI_PREFIX = "/ui/"
# Where fastapi-offline's Swagger UI and ReDoc files are served (service.app).
DOCS_ASSETS = "/docs-assets"
PAGE_PATHS = frozenset({"/", "/ui", "/docs", "/docs/oauth2-redirect", "/redoc"})
POLICY = (
    "default-src 'self'; script-src 'self'{hashes}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
    "worker-src 'self' blob:; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'"
)
INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)

router = APIRouter(include_in_schema=False)


@router.api_route("/", methods=["GET", "HEAD"])
@edge(PUBLIC)
async def index() -> FileResponse:
    """The try-it page."""
    return FileResponse(UI_FOLDER / "index.html", media_type="text/html")


@router.get("/ui")
@edge(PUBLIC)
async def ui() -> RedirectResponse:
    return RedirectResponse("/")


def mount_ui(app: FastAPI) -> None:
    """The page's own files (``/ui/app.js``, ``/ui/style.css``), open without the key."""
    app.mount(UI_PREFIX.rstrip("/"), StaticFiles(directory=UI_FOLDER), name="ui")
    declare(app.routes[-1], PUBLIC)


def declare_api_docs_public(app: FastAPI) -> None:
    """The routes FastAPI (fastapi-offline) made for the API docs: the schema, Swagger UI,
    ReDoc and their files, open without the key (the pages ask for it themselves)."""
    docs = {app.openapi_url, DOCS_ASSETS} | PAGE_PATHS
    for route in app.routes:
        if getattr(route, "path", None) in docs:
            declare(route, PUBLIC)


def is_page(path: str) -> bool:
    """Paths the security headers apply to (and that need no API key)."""
    return path in PAGE_PATHS or path.startswith((UI_PREFIX, DOCS_ASSETS + "/"))


class PageHeaders:
    """CSP, no-sniff, no referrer and revalidation for the pages and their files."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_page(scope["path"]):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def send_with_headers(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "no-referrer"
                # Revalidate (ETag / Last-Modified make that a 304): a new release shows at once.
                headers["Cache-Control"] = "no-cache"
                if not headers.get("content-type", "").startswith("text/html"):
                    # Scripts and styles (the 1.4 MB Swagger bundle): streamed, never scanned.
                    headers["Content-Security-Policy"] = POLICY.format(hashes="")
                    await send(message)
                    return
                start = message  # an HTML page: held until its inline scripts are known
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            hashes = "".join(
                f" 'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'"
                for script in INLINE_SCRIPT.findall(body)
            )
            MutableHeaders(scope=start)["Content-Security-Policy"] = POLICY.format(hashes=hashes)
            await send(start)
            await send({"type": "http.response.body", "body": body, "more_body": False})

        await self.app(scope, receive, send_with_headers)
