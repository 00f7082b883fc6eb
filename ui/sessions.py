"""Stateless signed login sessions: the cookie holds the user's name, when it was issued, when it
expires and a fingerprint of the user's password hash, signed with HMAC-SHA256.

Nothing is kept on the server, so several UI replicas accept each other's sessions when they share
the secret (``session_secret_file`` / ``SLOSCOPE_SESSION_SECRET``). Changing a user's password (its
hash in the users file) changes the fingerprint and so ends that user's sessions; changing the secret
ends everyone's. A process without a configured secret makes a random one: its sessions end when it
restarts. Logging out clears the cookie in that browser; a copy of the cookie taken before stays
valid until it expires (the price of keeping no server-side state), so sessions are short (12 h).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

SESSION_COOKIE = "sloscope_session"
DEFAULT_MAX_AGE_S = 12 * 3600
#: Shortest secret accepted: 32 bytes, as many as the HMAC's output.
MIN_SECRET_BYTES = 32
_VERSION = "v1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def random_secret() -> bytes:
    """A secret for a process that was given none (its sessions die with it)."""
    return secrets.token_bytes(MIN_SECRET_BYTES)


@dataclass(frozen=True)
class Session:
    """What a valid session cookie says."""

    user: str
    issued_at_s: int
    expires_at_s: int
    fingerprint: str


class SessionSigner:
    """Issues and checks session cookies with keys derived from one secret."""

    def __init__(
        self, secret: bytes, max_age_s: int = DEFAULT_MAX_AGE_S, clock: Callable[[], float] = time.time
    ) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"the session secret must be at least {MIN_SECRET_BYTES} bytes")
        # One key per use: a fingerprint can never pass for a signature, nor the reverse.
        self._sign_key = hmac.new(secret, b"sloscope session signature", hashlib.sha256).digest()
        self._print_key = hmac.new(secret, b"sloscope password fingerprint", hashlib.sha256).digest()
        self.max_age_s = max_age_s
        self.clock = clock

    def fingerprint(self, password_hash: str) -> str:
        """A short keyed digest of a password hash: it changes when the password does, and tells
        nothing about the hash to whoever reads the cookie."""
        return _b64(hmac.new(self._print_key, password_hash.encode(), hashlib.sha256).digest()[:12])

    def _signature(self, payload: str) -> str:
        return _b64(hmac.new(self._sign_key, f"{_VERSION}.{payload}".encode(), hashlib.sha256).digest())

    def issue(self, user: str, password_hash: str) -> str:
        """A cookie value for ``user``, valid for ``max_age_s`` from now."""
        now = int(self.clock())
        body = {"u": user, "iat": now, "exp": now + self.max_age_s, "fp": self.fingerprint(password_hash)}
        payload = _b64(json.dumps(body, separators=(",", ":")).encode())
        return f"{_VERSION}.{payload}.{self._signature(payload)}"

    def read(self, token: str) -> Session | None:
        """The session of a cookie value whose signature holds and that has not expired; else None.
        (The caller still checks the fingerprint against the user's current password hash.)"""
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != _VERSION or len(token) > 4096:
            return None
        _, payload, signature = parts
        if not hmac.compare_digest(signature.encode(), self._signature(payload).encode()):
            return None
        try:
            body = json.loads(_unb64(payload))
            session = Session(str(body["u"]), int(body["iat"]), int(body["exp"]), str(body["fp"]))
        except (ValueError, KeyError, TypeError):
            return None
        now = self.clock()
        # A session issued in the future (clocks of replicas apart by more than a minute) is refused too.
        if not session.issued_at_s - 60 <= now < session.expires_at_s:
            return None
        return session

    def current(self, session: Session, password_hash: str) -> bool:
        """Whether ``session`` was issued for the user's current password."""
        return bool(password_hash) and hmac.compare_digest(
            session.fingerprint, self.fingerprint(password_hash)
        )
