"""Writes batches of raw OTLP requests into the tables, decoded by the engine itself."""

from __future__ import annotations

from collections.abc import Sequence

from store.backend import Backend
from store.sql import ingest


def length_delimited(messages: Sequence[bytes]) -> bytes:
    """Frame messages as the engine's ``Protobuf`` format expects: varint length, then the bytes."""
    out = bytearray()
    for message in messages:
        n = len(message)
        while n >= 0x80:
            out.append((n & 0x7F) | 0x80)
            n >>= 7
        out.append(n)
        out += message
    return bytes(out)


class OtlpWriter:
    """Stores ``Export*ServiceRequest`` messages, one statement per table.

    Every statement carries an insert deduplication token derived from the caller's token, so
    writing the same messages again under the same token (a replay after a crash) adds no rows.
    A single statement reads its input as one stream, which keeps its block numbering, and so the
    deduplication, the same on every attempt.
    """

    def __init__(self, backend: Backend, correlation_keys: Sequence[str]) -> None:
        self.backend = backend
        self._statements = {
            signal: ingest.statements_for(signal, correlation_keys) for signal in ingest.SIGNALS
        }

    def write(self, signal: str, messages: Sequence[bytes], token: str, tenant: str = "") -> None:
        """Store ``messages`` of ``signal`` as rows of ``tenant`` under the deduplication ``token``."""
        data = length_delimited(messages)
        structure = ingest.SIGNALS[signal][1]
        settings = ingest.format_settings(signal)
        for statement in self._statements[signal]:
            self.backend.insert_from(
                ingest.for_tenant(statement.sql, tenant),
                data,
                "Protobuf",
                structure,
                {**settings, "insert_deduplication_token": f"{token}:{statement.table}"},
            )
