"""A tus 1.0.0 client for the storage service's uploads, on one kept-alive ``httpx.Client``.

``TusUploader.upload`` sends a file: one of at most ``SMALL`` bytes in the creation request itself
(the ``creation-with-upload`` extension: one request per small file; an interrupted one starts
over), a larger one in ``PATCH`` requests of ``chunk`` bytes, each body streamed from the file in
``READ`` pieces (never a whole chunk in memory; what an interrupted PATCH delivered is kept). An upload whose URL is given resumes at the offset the service reports
(``HEAD``); a request the service refuses with 403 (the token expired) is retried once with the
token ``renew()`` returns. A PATCH refused because another request still writes the upload (423:
the interrupted client's last request is still draining on the server) or because the offset moved
(409) is sent again from the offset ``HEAD`` then reports, for up to ``BUSY_WAIT`` seconds. Any tus
server works; the storage service answers errors as
``{"error": ...}``, which ``TusError`` carries.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

__all__ = ["BUSY_WAIT", "CHUNK", "READ", "SMALL", "TusError", "TusUploader", "refusal_reason"]

CHUNK = 64 << 20
"""Bytes per PATCH request."""
SMALL = 1 << 20
"""A file of at most this many bytes is sent with its creation (not resumable: it is short)."""
READ = 1 << 20
"""Bytes read from the file at once while a body is streamed."""
BUSY_WAIT = 60.0
"""Seconds a resumed upload keeps asking while the server still writes the interrupted request's bytes."""
TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = "application/offset+octet-stream"


class TusError(Exception):
    """A request the server refused: ``status`` and its ``reason`` (the service's ``error``)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


def refusal_reason(response: httpx.Response) -> str:
    """The storage service's reason for refusing a request (its ``error``; else the body's start)."""
    text = response.text
    with contextlib.suppress(ValueError, KeyError, TypeError):
        return str(json.loads(text)["error"])[:500]
    return text[:500]


def _body(path: Path, offset: int, length: int) -> Iterator[bytes]:
    with open(path, "rb") as f:
        f.seek(offset)
        left = length
        while left > 0:
            piece = f.read(min(READ, left))
            if not piece:
                raise OSError(f"{path} shrank while it was uploaded")
            left -= len(piece)
            yield piece


class TusUploader:
    """Uploads files to ``<base_url>/tus`` with ``token``; ``renew()`` (optional) returns a fresh token."""

    def __init__(self, http: httpx.Client, base_url: str, token: str,
                 renew: Callable[[], str] | None = None, chunk: int = CHUNK) -> None:
        self._http = http
        self._endpoint = base_url.rstrip("/") + "/tus"
        self._token = token
        self._renew = renew
        self._chunk = chunk

    def _send(self, method: str, url: str, headers: dict[str, str], body: Callable[[], object] | None = None,
              ok: tuple[int, ...] = (200, 201, 204)) -> httpx.Response:
        for attempt in (0, 1):
            response = self._http.request(method, url, content=body() if body else None,  # type: ignore[arg-type]
                                          headers={**TUS, **headers, "Authorization": f"Bearer {self._token}"})
            if response.status_code == 403 and attempt == 0 and self._renew is not None:
                self._token = self._renew()
                continue
            if response.status_code not in ok:
                raise TusError(response.status_code, refusal_reason(response))
            return response
        raise AssertionError("unreachable")

    def offset(self, url: str) -> int | None:
        """The offset of the upload at ``url``; None when the server no longer has it."""
        try:
            response = self._send("HEAD", url, {})
        except TusError as exc:
            if exc.status in (404, 410):
                return None
            raise
        return int(response.headers["upload-offset"])

    def upload(self, source: Path, resume_url: str | None = None,
               on_url: Callable[[str], None] | None = None,
               on_progress: Callable[[int], None] | None = None) -> str:
        """Uploads ``source`` (resuming at ``resume_url`` when the server still has it); returns the
        upload's URL. ``on_url(url)`` runs once the upload exists, ``on_progress(offset)`` after
        each request."""
        size = os.stat(source).st_size
        offset = self.offset(resume_url) if resume_url else None
        if resume_url is not None and offset is not None:
            url = resume_url
        else:
            url, offset = self._create(source, size)
        if on_url is not None:
            on_url(url)
        if on_progress is not None:
            on_progress(offset)
        busy_until: float | None = None
        while offset < size:
            try:
                offset = self._patch(url, source, offset, min(self._chunk, size - offset))
            except TusError as exc:
                if exc.status not in (409, 423):
                    raise
                busy_until = busy_until or time.monotonic() + BUSY_WAIT
                if time.monotonic() > busy_until:
                    raise
                time.sleep(0.2)  # the other request's bytes are still being written: ask again
                now = self.offset(url)
                if now is None:
                    raise
                offset = now
                continue
            busy_until = None
            if on_progress is not None:
                on_progress(offset)
        return url

    def _patch(self, url: str, source: Path, start: int, length: int) -> int:
        response = self._send("PATCH", url, {"Upload-Offset": str(start), "Content-Type": OCTETS,
                                             "Content-Length": str(length)},
                              lambda: _body(source, start, length), ok=(204,))
        return int(response.headers["upload-offset"])

    def _create(self, source: Path, size: int) -> tuple[str, int]:
        headers = {"Upload-Length": str(size),
                   "Upload-Metadata": "filename " + base64.b64encode(source.name.encode()).decode()}
        body = None
        if 0 < size <= min(SMALL, self._chunk):
            headers.update({"Content-Type": OCTETS, "Content-Length": str(size)})
            body = lambda: _body(source, 0, size)  # noqa: E731
        response = self._send("POST", self._endpoint, headers, body, ok=(201,))
        url = str(httpx.URL(self._endpoint).join(response.headers["location"]))
        return url, int(response.headers.get("upload-offset", "0"))
