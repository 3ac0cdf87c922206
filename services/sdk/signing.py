"""Backend.AI-style request signing: HMAC-SHA256 over the request, keyed by date and host.

``Authorization: BackendAI signMethod=HMAC-SHA256, credential=<access_key>:<signature>``
with the date in ``X-BackendAI-Date`` (ISO 8601, UTC). The signing key is derived
from the secret key, the date (``YYYYMMDD``) and the host, as Backend.AI does; the
signed string also covers a SHA-256 of the body, so a body cannot be swapped.

The gateway accepts a signature once (a replay within the date window is refused), so
``sign_request`` never dates two requests alike: the date keeps its microseconds and is
strictly increasing within a process (``next_date``); a retry is signed afresh.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import threading

__all__ = [
    "API_VERSION",
    "SignatureError",
    "next_date",
    "parse_authorization",
    "sign_request",
    "signature_for",
]

API_VERSION = "v8.20260101"
_AUTH = re.compile(
    r"^BackendAI signMethod=HMAC-(?P<hash>[A-Z0-9]+), credential=(?P<access>[A-Za-z0-9]{1,64}):(?P<sig>[0-9a-f]+)$"
)
"""The header's form; an access key is letters and digits (``AKIA`` and 16 more where Berth issues it), at most 64
as the API takes one: any other is malformed, never looked up (NUL or a lone surrogate failed in PostgreSQL)."""


_last_date = dt.datetime.min.replace(tzinfo=dt.UTC)
_date_lock = threading.Lock()


def next_date() -> dt.datetime:
    """Returns the current UTC time, with microseconds, later than every date this process returned
    before (a microsecond later when the clock did not move or went back): no two requests signed
    here carry the same date, so none carries the signature of another."""
    global _last_date
    with _date_lock:
        now = dt.datetime.now(dt.UTC)
        _last_date = now if now > _last_date else _last_date + dt.timedelta(microseconds=1)
        return _last_date


class SignatureError(ValueError):
    """Raised when an Authorization header cannot be parsed."""


def signature_for(
    *, secret_key: str, method: str, path: str, date: dt.datetime, host: str, content_type: str, body: bytes
) -> str:
    """Returns the hex HMAC-SHA256 signature of a request."""
    body_hash = hashlib.sha256(body).hexdigest()
    sign_str = "\n".join(
        [
            method.upper(),
            path,
            date.isoformat(),
            f"host:{host}",
            f"content-type:{content_type.lower()}",
            f"x-backendai-version:{API_VERSION}",
            body_hash,
        ]
    )
    key = hmac.new(secret_key.encode(), date.strftime("%Y%m%d").encode(), hashlib.sha256).digest()
    key = hmac.new(key, host.encode(), hashlib.sha256).digest()
    return hmac.new(key, sign_str.encode(), hashlib.sha256).hexdigest()


def sign_request(
    *, access_key: str, secret_key: str, method: str, path: str, host: str, body: bytes,
    content_type: str = "application/json", date: dt.datetime | None = None,
) -> dict[str, str]:
    """Returns the headers that sign a request, dated ``date`` or else ``next_date()``."""
    date = date or next_date()
    signature = signature_for(
        secret_key=secret_key, method=method, path=path, date=date, host=host, content_type=content_type, body=body
    )
    return {
        "Authorization": f"BackendAI signMethod=HMAC-SHA256, credential={access_key}:{signature}",
        "X-BackendAI-Date": date.isoformat(),
        "X-BackendAI-Version": API_VERSION,
        "Content-Type": content_type,
    }


def parse_authorization(header: str) -> tuple[str, str]:
    """Returns (access_key, signature) from an Authorization header."""
    match = _AUTH.match(header.strip())
    if not match:
        raise SignatureError("malformed Authorization header: expected 'BackendAI signMethod=HMAC-SHA256, credential=<access>:<signature>'")
    if match["hash"] != "SHA256":
        raise SignatureError(f"unsupported signMethod HMAC-{match['hash']}: use HMAC-SHA256")
    return match["access"], match["sig"]
