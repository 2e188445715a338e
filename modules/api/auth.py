"""API access control: HTTP Basic for --api-auth (constant-time) and a same-origin check for state-changing calls."""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]

PROTECTED_PREFIXES = ("/sdapi/", "/docs", "/redoc", "/openapi.json")
"""Paths --api-auth covers: every API route and the documentation that describes them."""


class CredentialsError(ValueError):
    """A --api-auth entry that is not user:password."""


def parse_credentials(value: str | None) -> dict[str, str]:
    """`user:pass[,user2:pass2]` -> {user: pass}; an entry without a colon is refused."""
    creds: dict[str, str] = {}
    for entry in (e.strip() for e in (value or "").split(",")):
        if not entry:
            continue
        if ":" not in entry:
            raise CredentialsError("--api-auth entries must be user:password")
        user, password = entry.split(":", 1)
        creds[user] = password
    return creds


def check_basic(header: str | None, creds: Mapping[str, str]) -> bool:
    """True if the Authorization header carries a known user with the right password."""
    if not header or header[:6].lower() != "basic ":
        return False
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return False
    user, sep, password = decoded.partition(":")
    if not sep:
        return False
    ok = False
    # Compare against every entry so the time taken does not tell which user names exist.
    for known_user, known_password in creds.items():
        user_ok = hmac.compare_digest(user.encode(), known_user.encode())
        pass_ok = hmac.compare_digest(password.encode(), known_password.encode())
        ok |= user_ok and pass_ok
    return ok


class BasicAuthMiddleware:
    """ASGI middleware: 401 with `WWW-Authenticate: Basic` on protected paths without valid credentials.

    Checked before the body is read, so an unauthenticated client cannot make the server buffer a large body.
    CORS preflights (OPTIONS) pass: browsers never send credentials on them.
    """

    def __init__(
        self, app: ASGIApp, creds: Mapping[str, str], prefixes: Iterable[str] = PROTECTED_PREFIXES, root_path: str = ""
    ) -> None:
        self.app = app
        self.creds = dict(creds)
        self.prefixes = tuple(root_path.rstrip("/") + p for p in prefixes)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") == "OPTIONS" or not self._protected(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if check_basic(headers.get("authorization"), self.creds):
            await self.app(scope, receive, send)
            return
        body = (
            b'{"error":"Unauthorized","detail":"Incorrect username or password","body":"","errors":'
            b'"Incorrect username or password"}'
        )
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"www-authenticate", b"Basic"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _protected(self, path: str) -> bool:
        return any(path == p.rstrip("/") or path.startswith(p) for p in self.prefixes)


def origin_allowed(
    origin: str, host: str | None, scheme: str, allow_origins: Iterable[str] = (), allow_origin_regex: str | None = None
) -> bool:
    """Whether a browser request from `origin` may change state: same origin, or listed by --cors-allow-origins."""
    if origin == "null":  # sandboxed frames and file:// pages: never trusted
        return False
    if host and origin.lower() in (f"{scheme}://{host}".lower(), f"http://{host}".lower(), f"https://{host}".lower()):
        return True
    allowed = [o.strip() for o in allow_origins if o.strip()]
    if "*" in allowed or origin in allowed:
        return True
    return bool(allow_origin_regex and re.fullmatch(allow_origin_regex, origin))
