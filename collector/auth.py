"""Ingest authentication: tokens, the tenant each may pin, and per-token rate limits.

The receivers (OTLP/HTTP, OTLP/gRPC, Zipkin) call :meth:`IngestAuth.admit` with the header that
carries the token *before* they read or decode the body, so a request without a valid token costs
a header lookup and one SHA-256. After decoding they call :meth:`IngestAuth.accept`, which charges
the token's rate limit with the request's items and hands the request to the intake with the
token's tenant. The tenant is never read from the payload.

Tokens are listed in a YAML file (setting ``ingest_tokens_file``) by the hex SHA-256 of the token,
never the token itself (docs/security/ingest-auth.md)::

    tokens:
      - name: checkout-prod
        sha256: 3f1c...                      # sloscope token new prints it
        tenant: acme                         # optional
        rate_limit: {items_per_second: 5000, burst: 20000}   # optional

A plain SHA-256 is the right hash here, unlike for passwords: tokens are 256 random bits, so there
is nothing to guess, and a slow hash would cost every export. Lookup is constant-time (see
:meth:`TokenSet.authenticate`).
"""

from __future__ import annotations

import difflib
import hashlib
import hmac
import json
import math
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import yaml
from google.protobuf.message import Message
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from collector.decode import Decoded
from collector.intake import Intake, Overloaded, Unavailable
from collector.rate_limit import TokenBucket
from collector.telemetry import CollectorMetrics
from store.tenancy import check_tenant

#: The default ``ingest_auth_header``: ``Authorization: Bearer <token>``. Any other header name
#: carries the raw token as its whole value (``x-api-key: <token>``).
AUTHORIZATION = "authorization"
#: What ``sloscope token new`` puts in front of its tokens, so secret scanners can recognise them.
TOKEN_PREFIX = "sloscope_"

_TAG = "tag:yaml.org,2002:"
_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,126}[A-Za-z0-9])?")
_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")
# HTTP field names as gRPC metadata allows them: lower case, no binary (-bin) or reserved (grpc-) keys.
_HEADER = re.compile(r"[a-z0-9][a-z0-9_.-]*")
TOP_KEYS = ("tokens",)
TOKEN_KEYS = ("name", "sha256", "tenant", "rate_limit")
RATE_KEYS = ("items_per_second", "burst")


@dataclass(frozen=True)
class RateLimit:
    """``items_per_second`` spans, metric points or log records, in bursts of up to ``burst``."""

    items_per_second: float
    burst: int


@dataclass(frozen=True)
class IngestToken:
    """One entry of the tokens file. ``sha256`` is the digest of the token (32 bytes)."""

    name: str
    sha256: bytes
    tenant: str = ""
    rate_limit: RateLimit | None = None
    #: Where the entry is written (``file:line``), for messages about it.
    source: str = ""


def digest(token: str) -> bytes:
    """The SHA-256 of a token as presented (its UTF-8 bytes)."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def new_token() -> str:
    """A fresh random token: the prefix and 256 bits in URL-safe base64 (valid in a Bearer header)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


# -- the tokens file ----------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class TokenFileError:
    """One problem in the tokens file: ``file:line: field: problem`` (line 0 when none applies)."""

    file: str
    line: int
    field: str
    problem: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.problem}"


class TokenFileErrors(ValueError):
    """The tokens file cannot be used; ``errors`` lists every problem found."""

    def __init__(self, errors: Sequence[TokenFileError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


def _line(node: Node | None) -> int:
    return node.start_mark.line + 1 if node is not None else 0


def _describe(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == _TAG + "null":
        return "nothing"
    return repr(node.value)


def _hint(word: str, choices: Sequence[str]) -> str:
    guess = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"did you mean {guess[0]!r}?" if guess else "expected one of " + ", ".join(choices)


class _Reader:
    """Walks the YAML nodes of the file (every node knows its line) and records every problem."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.errors: list[TokenFileError] = []
        #: The line of the first entry of each name and digest, for duplicates.
        self.names: dict[str, int] = {}
        self.digests: dict[bytes, int] = {}

    def error(self, node: Node | None, field: str, problem: str) -> None:
        self.errors.append(TokenFileError(self.file, _line(node), field or "(document)", problem))

    def mapping(self, node: Node, field: str, known: Sequence[str]) -> dict[str, tuple[Node, Node]] | None:
        """Key -> (key node, value node); unknown and repeated keys are errors."""
        if not isinstance(node, MappingNode):
            self.error(node, field, f"must be a mapping, got {_describe(node)}")
            return None
        out: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self.error(key_node, field, "keys must be text")
                continue
            key = key_node.value
            path = f"{field}.{key}" if field else key
            if key in out:
                self.error(key_node, path, "duplicate key")
            elif key == "token" and "token" not in known:
                self.error(
                    key_node,
                    path,
                    "the token itself must never be in this file: give its sha256 instead "
                    "(`sloscope token new` prints the entry)",
                )
            elif key not in known:
                self.error(key_node, path, f"unknown key {key!r} ({_hint(key, known)})")
            else:
                out[key] = (key_node, value_node)
        return out

    def text(self, node: Node, field: str) -> str | None:
        if isinstance(node, ScalarNode) and node.tag not in (_TAG + "str", _TAG + "null"):
            self.error(node, field, f"must be text, got {node.value!r} (quote it)")
            return None
        if not isinstance(node, ScalarNode) or node.tag != _TAG + "str" or not node.value.strip():
            self.error(node, field, f"must be text, got {_describe(node)}")
            return None
        return node.value

    def number(self, node: Node, field: str, *, whole: bool) -> float | None:
        what = "a whole number" if whole else "a number"
        tags = (_TAG + "int",) if whole else (_TAG + "int", _TAG + "float")
        if not isinstance(node, ScalarNode) or node.tag not in tags:
            self.error(node, field, f"must be {what} greater than 0, got {_describe(node)}")
            return None
        value = yaml.safe_load(node.value)
        if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
            self.error(node, field, f"must be {what} greater than 0, got {node.value!r}")
            return None
        return value


def _read_rate_limit(r: _Reader, node: Node, field: str) -> RateLimit | None:
    keys = r.mapping(node, field, RATE_KEYS)
    if keys is None:
        return None
    if "items_per_second" not in keys:
        r.error(node, f"{field}.items_per_second", "is required")
        return None
    rate = r.number(keys["items_per_second"][1], f"{field}.items_per_second", whole=False)
    burst: float | None = None
    if "burst" in keys:
        burst = r.number(keys["burst"][1], f"{field}.burst", whole=True)
        if burst is None:
            return None
    if rate is None:
        return None
    # Without a burst, one second's worth (at least one item, or nothing could ever be admitted).
    return RateLimit(float(rate), int(burst) if burst is not None else max(1, math.ceil(rate)))


def _read_token(r: _Reader, node: Node, field: str) -> IngestToken | None:
    start = len(r.errors)
    keys = r.mapping(node, field, TOKEN_KEYS)
    if keys is None:
        return None
    for required in ("name", "sha256"):
        if required not in keys:
            r.error(node, f"{field}.{required}", "is required")
    name = r.text(keys["name"][1], f"{field}.name") if "name" in keys else None
    if name is not None and not _NAME.fullmatch(name):
        r.error(
            keys["name"][1],
            f"{field}.name",
            f"{name!r} is not a valid name (letters, digits, '.', '_' and '-', starting and ending with a "
            "letter or digit, at most 128 characters)",
        )
    elif name is not None:
        # Checked even when the entry has other errors, so that one run lists every problem.
        if name in r.names:
            problem = f"duplicate name {name!r} (first at line {r.names[name]})"
            r.error(keys["name"][1], f"{field}.name", problem)
        r.names.setdefault(name, _line(node))
    sha = None
    if "sha256" in keys:
        value_node = keys["sha256"][1]
        # A digest of only decimal digits would be read as an integer: take the text as written.
        raw = value_node.value if isinstance(value_node, ScalarNode) else None
        if raw is None or not _HEX_DIGEST.fullmatch(str(raw)):
            shown = "nothing" if not raw else f"{len(str(raw))} characters"
            r.error(value_node, f"{field}.sha256", f"must be 64 hex digits (a SHA-256), got {shown}")
        else:
            sha = bytes.fromhex(raw)
            if sha in r.digests:
                # Two entries for one token would make its tenant and limit depend on their order.
                problem = f"the same token as the entry at line {r.digests[sha]}"
                r.error(value_node, f"{field}.sha256", problem)
            r.digests.setdefault(sha, _line(node))
    tenant = ""
    if "tenant" in keys:
        value = r.text(keys["tenant"][1], f"{field}.tenant")
        if value is not None:
            try:
                tenant = check_tenant(value)
            except ValueError as exc:
                r.error(keys["tenant"][1], f"{field}.tenant", str(exc))
    rate_limit = None
    if "rate_limit" in keys:
        rate_limit = _read_rate_limit(r, keys["rate_limit"][1], f"{field}.rate_limit")
    if len(r.errors) > start or name is None or sha is None:
        return None
    return IngestToken(name, sha, tenant, rate_limit, f"{r.file}:{_line(node)}")


def _read_file(path: Path) -> tuple[list[IngestToken], list[TokenFileError]]:
    file = str(path)
    r = _Reader(file)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problem = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return [], [TokenFileError(file, 0, "(file)", f"cannot read it: {problem}")]
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        return [], [
            TokenFileError(file, mark.line + 1 if mark else 0, "(yaml)", str(exc.problem or exc.context))
        ]
    except yaml.YAMLError as exc:
        return [], [TokenFileError(file, 0, "(yaml)", str(exc))]
    if root is None or (isinstance(root, ScalarNode) and root.tag == _TAG + "null"):
        return [], [TokenFileError(file, 0, "(document)", "the file is empty: list the tokens under tokens:")]
    keys = r.mapping(root, "", TOP_KEYS)
    if keys is None:
        return [], r.errors
    if "tokens" not in keys:
        r.error(root, "tokens", "is required")
        return [], r.errors
    items_node = keys["tokens"][1]
    if not isinstance(items_node, SequenceNode) or not items_node.value:
        shown = "an empty list" if isinstance(items_node, SequenceNode) else _describe(items_node)
        r.error(items_node, "tokens", f"must be a list of at least one token, got {shown}")
        return [], r.errors
    tokens = [_read_token(r, item, f"tokens[{i}]") for i, item in enumerate(items_node.value)]
    return [t for t in tokens if t is not None], sorted(r.errors, key=lambda e: e.line)


class TokenSet:
    """The ingest tokens of the tokens file."""

    def __init__(self, tokens: Sequence[IngestToken]) -> None:
        self.tokens = tuple(tokens)

    @classmethod
    def load(cls, path: str | Path) -> TokenSet:
        """The tokens of ``path``; :class:`TokenFileErrors` listing every problem if it has any."""
        tokens, errors = _read_file(Path(path))
        if errors:
            raise TokenFileErrors(errors)
        return cls(tokens)

    def authenticate(self, presented: str) -> IngestToken | None:
        """The token whose digest is the SHA-256 of ``presented``, or None.

        Every stored digest is compared, with ``hmac.compare_digest``, and the loop never stops
        early, so the time taken does not depend on which entry (if any) matched. (What is compared
        is a digest of the attacker's own input, so even a timing leak would only tell them bytes of
        a hash they already know; the constant-time loop means there is nothing to argue about.)
        """
        candidate = digest(presented)
        found: IngestToken | None = None
        for token in self.tokens:
            match = hmac.compare_digest(candidate, token.sha256)
            found = token if match else found
        return found

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass(frozen=True)
class NewToken:
    """What ``sloscope token new`` prints: the token, and its entry for the tokens file."""

    token: str
    entry: IngestToken
    yaml: str


def _yaml_text(value: str) -> str:
    # Plain where YAML reads it back as the same text; quoted where it would not ("1.5", "true").
    return value if yaml.safe_load(value) == value else json.dumps(value)


def token_entry(
    name: str,
    tenant: str = "",
    items_per_second: float | None = None,
    burst: int | None = None,
    given: TextIO | None = None,
) -> NewToken:
    """A new token (or the one read from ``given``) and its tokens file entry, indented to be
    appended under ``tokens:``. ValueError naming the option for a bad name, tenant or limit."""
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"--name: {name!r} is not a valid name (letters, digits, '.', '_' and '-', starting and ending "
            "with a letter or digit, at most 128 characters)"
        )
    if tenant:
        try:
            check_tenant(tenant)
        except ValueError as exc:
            raise ValueError(f"--tenant: {exc}") from None
    limit = None
    if burst is not None and items_per_second is None:
        raise ValueError("--burst: needs --items-per-second too")
    if items_per_second is not None:
        if not math.isfinite(items_per_second) or items_per_second <= 0:
            raise ValueError(f"--items-per-second: must be greater than 0, got {items_per_second:g}")
        if burst is not None and burst < 1:
            raise ValueError(f"--burst: must be at least 1, got {burst}")
        limit = RateLimit(items_per_second, burst or max(1, math.ceil(items_per_second)))
    if given is None:
        token = new_token()
    else:
        token = given.read().strip()
        if len(token) < 16 or any(c.isspace() for c in token):
            raise ValueError("--stdin: the token must be one word of at least 16 characters")
    entry = IngestToken(name, digest(token), tenant, limit)
    lines = [f"  - name: {_yaml_text(name)}", f"    sha256: {entry.sha256.hex()}"]
    if tenant:
        lines.append(f"    tenant: {_yaml_text(tenant)}")
    if limit is not None:
        lines.append(
            f"    rate_limit: {{items_per_second: {limit.items_per_second:g}, burst: {limit.burst}}}"
        )
    return NewToken(token, entry, "\n".join(lines) + "\n")


# -- checking requests -----------------------------------------------------------------------------


class Unauthenticated(Exception):
    """No valid token (HTTP 401, gRPC UNAUTHENTICATED). The message names what is wrong and never
    contains what was presented; ``challenge`` is the ``WWW-Authenticate`` value."""

    def __init__(self, message: str, challenge: str) -> None:
        super().__init__(message)
        self.message, self.challenge = message, challenge


class RateLimited(Exception):
    """The token's rate limit is used up (HTTP 429, gRPC RESOURCE_EXHAUSTED); retry after
    ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.message, self.retry_after = message, retry_after


def check_header_name(name: str) -> str:
    """``name`` lower-cased if it can carry ingest tokens (an HTTP field name that is also a gRPC
    metadata key); ValueError otherwise."""
    lowered = name.strip().lower()
    if not _HEADER.fullmatch(lowered) or lowered.endswith("-bin") or lowered.startswith("grpc-"):
        raise ValueError(
            f"{name!r} cannot carry tokens: use 'authorization' (Bearer) or a header name of letters, "
            "digits and '-' such as 'x-api-key' (not grpc-* or *-bin)"
        )
    return lowered


class IngestAuth:
    """Checks ingest requests against a :class:`TokenSet`, one rate-limit bucket per token."""

    def __init__(
        self,
        tokens: TokenSet,
        metrics: CollectorMetrics,
        header: str = AUTHORIZATION,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tokens = tokens
        self.metrics = metrics
        self.header = check_header_name(header)
        self.bearer = self.header == AUTHORIZATION
        self._buckets = {
            t.name: TokenBucket(t.rate_limit.items_per_second, t.rate_limit.burst, clock)
            for t in tokens.tokens
            if t.rate_limit is not None
        }
        if self.bearer:
            self._where = "the Authorization header"
            self.challenge = 'Bearer realm="sloscope"'
        else:
            self._where = f"the {self.header} header"
            # No registered scheme says "raw token in this header"; this one at least names it.
            self.challenge = f'ApiKey realm="sloscope", header="{self.header}"'

    def _presented(self, value: str | None) -> str:
        if self.bearer:
            scheme, _, credentials = (value or "").strip().partition(" ")
            if not scheme:
                raise Unauthenticated(f"missing bearer token in {self._where}", self.challenge)
            if scheme.lower() != "bearer":
                # Only the scheme is named: whatever follows it may be a secret.
                raise Unauthenticated(
                    f"{self._where} must use the Bearer scheme (Authorization: Bearer <token>)",
                    self.challenge,
                )
            presented = credentials.strip()
            if not presented:
                raise Unauthenticated(f"missing bearer token in {self._where}", self.challenge)
            return presented
        presented = (value or "").strip()
        if not presented:
            raise Unauthenticated(f"missing token in {self._where}", self.challenge)
        return presented

    def admit(self, signal: str, value: str | None) -> IngestToken:
        """The token ``value`` (the configured header's value, None when absent) presents.

        Called before the body is read: raises Unauthenticated, or RateLimited when the token's
        bucket cannot take a single item now.
        """
        try:
            token = self.tokens.authenticate(self._presented(value))
            if token is None:
                raise Unauthenticated(
                    f"unknown token in {self._where}", self.challenge + ', error="invalid_token"'
                )
        except Unauthenticated:
            self.metrics.refusals.labels(signal, "unauthenticated").inc()
            raise
        bucket = self._buckets.get(token.name)
        wait = bucket.retry_after() if bucket is not None else 0
        if wait:
            self.metrics.refusals.labels(signal, "rate_limited").inc()
            raise RateLimited(self._limited(token, wait), wait)
        return token

    def _limited(self, token: IngestToken, wait: int) -> str:
        limit = token.rate_limit
        assert limit is not None
        return (
            f"rate limit of token {token.name!r} exceeded ({limit.items_per_second:g} items per second, "
            f"burst {limit.burst}); retry in {wait} s"
        )

    async def accept(self, intake: Intake, signal: str, decoded: Decoded, token: IngestToken) -> Message:
        """Charge ``token``'s rate limit with the request's items (valid or not: every item costs the
        receiver work), then ``intake.accept`` it as the token's tenant.

        Raises RateLimited, or what ``Intake.accept`` raises; a request the intake does not accept
        (queue full, log unavailable) is given back to the bucket, so the retry is not charged twice.
        """
        items = decoded.items + decoded.rejected
        bucket = self._buckets.get(token.name)
        if bucket is not None:
            wait = bucket.take(items)
            if wait:
                self.metrics.refusals.labels(signal, "rate_limited").inc()
                self.metrics.rejected.labels(signal, "rate_limited").inc(items)
                raise RateLimited(self._limited(token, wait), wait)
        try:
            reply = await intake.accept(signal, decoded, tenant=token.tenant)
        except (Overloaded, Unavailable):
            if bucket is not None:
                bucket.give_back(items)
            raise
        if decoded.items:
            self.metrics.token_items.labels(token.name, signal).inc(decoded.items)
        return reply
