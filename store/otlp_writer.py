"""Writes batches of raw OTLP requests into the tables, decoded by the engine itself."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

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
    """Stores ``Export*ServiceRequest`` messages.

    A batch is cut into ``parallelism`` parts by position and the parts are inserted concurrently,
    each by one statement per table with a deduplication token derived from the caller's batch
    token. The cut depends only on the batch, so writing the same batch again (a replay after a
    crash) produces the same parts and tokens and adds no rows, even if the first attempt stopped
    half way. One statement per part matters: a statement reading parts in parallel streams would
    number its blocks in a different order each time.
    """

    def __init__(self, backend: Backend, correlation_keys: Sequence[str], parallelism: int | None = None) -> None:
        self.backend = backend
        self.parallelism = max(1, parallelism or getattr(backend, "insert_parallelism", 1))
        self._pool = ThreadPoolExecutor(self.parallelism, thread_name_prefix="insert")
        self._statements = {signal: ingest.statements_for(signal, correlation_keys) for signal in ingest.SIGNALS}

    def write(self, signal: str, messages: Sequence[bytes], token: str) -> None:
        """Store one batch of ``signal`` requests under the deduplication ``token``."""
        parts = min(self.parallelism, len(messages))
        size = -(-len(messages) // parts) if parts else 0
        chunks = [messages[i * size : (i + 1) * size] for i in range(parts)]
        futures = [
            self._pool.submit(self._write_part, signal, chunk, f"{token}:{i}/{parts}")
            for i, chunk in enumerate(chunks)
        ]
        for future in futures:
            future.result()

    def _write_part(self, signal: str, messages: Sequence[bytes], token: str) -> None:
        data = length_delimited(messages)
        structure = ingest.SIGNALS[signal][1]
        settings = ingest.format_settings(signal)
        for statement in self._statements[signal]:
            self.backend.insert_from(
                statement.sql,
                data,
                "Protobuf",
                structure,
                {**settings, "insert_deduplication_token": f"{token}:{statement.table}"},
            )
