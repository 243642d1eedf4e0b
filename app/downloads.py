"""Saved banks handed out as one-time download links, never as server paths.

Gradio serves a file output from its cache folder at ``/gradio_api/file=<path>`` to anyone who has that path,
without a session, and a path in its cache is one another session could pass back to ``/load_bank``. A saved
bank (the session's documents, whole) is served here instead: ``offer`` gives a link with a random token
(``longmem/download/<token>``; no path of the server in it), the route answers it once and deletes the file
after sending it. Clear and the session's end delete the file too, so a link not yet used stops working then.
"""
from __future__ import annotations

import secrets
import threading
from pathlib import Path

ROUTE = "/longmem/download/{token}"
LINK = "longmem/download/{token}"  # relative to the page, so it works under any root path
GONE = "This download link was used already, or its bank was cleared: save the memory bank again."


class Downloads:
    """The files waiting for their one download: token -> (file, the name the browser saves it under)."""

    def __init__(self) -> None:
        self._files: dict[str, tuple[Path, str]] = {}
        self._lock = threading.Lock()

    def offer(self, path: Path, name: str | None = None) -> str:
        """A one-time link (relative to the page) for ``path``; links whose file is gone are forgotten here."""
        token = secrets.token_urlsafe(24)
        with self._lock:
            for stale in [t for t, (p, _) in self._files.items() if not p.is_file()]:
                del self._files[stale]
            self._files[token] = (Path(path), name or Path(path).name)
        return LINK.format(token=token)

    def take(self, token: str) -> tuple[Path, str] | None:
        """The file of ``token`` and its name, forgotten at once (a second request gets nothing)."""
        with self._lock:
            return self._files.pop(token, None)

    def __len__(self) -> int:
        return len(self._files)

    def route(self):
        """The Starlette route that serves each link once, then deletes its file."""
        from starlette.background import BackgroundTask
        from starlette.responses import FileResponse, PlainTextResponse
        from starlette.routing import Route

        async def download(request):
            token = request.path_params["token"]
            if request.method == "HEAD":  # a look before downloading does not use the link up
                with self._lock:
                    waiting = self._files.get(token)
                return PlainTextResponse("", status_code=200 if waiting and waiting[0].is_file() else 404)
            taken = self.take(token)
            if taken is None or not taken[0].is_file():
                return PlainTextResponse(GONE, status_code=404)
            path, name = taken
            return FileResponse(path, filename=name, media_type="application/zip",
                                background=BackgroundTask(_delete, path))
        return Route(ROUTE, download, methods=["GET"])


def _delete(path: Path) -> None:
    """Delete a served file and its folder, when empty (each saved bank has a folder of its own)."""
    path.unlink(missing_ok=True)
    try:
        path.parent.rmdir()
    except OSError:
        pass
