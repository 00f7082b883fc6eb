"""Results whose strings are valid UTF-8, whatever bytes the store holds.

ClickHouse's String is bytes: the engine stores what an exporter sent, invalid UTF-8 included, and
hands it out as Arrow ``string`` columns unchecked. One such value would make every later
``to_pylist()`` of the column raise. Reads therefore check the result once (a vectorised UTF-8
validation, cheap next to the query) and, only when it fails, rewrite the invalid sequences as
U+FFFD, as a browser shows them. The stored bytes are left as they were sent.
"""

from __future__ import annotations

import pyarrow as pa


def valid_utf8(table: pa.Table) -> pa.Table:
    """``table``, with every invalid UTF-8 sequence in its string values replaced by U+FFFD."""
    try:
        table.validate(full=True)
        return table
    except pa.ArrowInvalid:
        pass
    columns = [_repair(column.combine_chunks()) for column in table.columns]
    return pa.Table.from_arrays(columns, schema=table.schema)


def _repair(array: pa.Array) -> pa.Array:
    kind = array.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        raw = array.cast(pa.large_binary() if pa.types.is_large_string(kind) else pa.binary())
        return pa.array(
            [None if b is None else b.decode("utf-8", "replace") for b in raw.to_pylist()], type=kind
        )
    if pa.types.is_map(kind):
        return pa.MapArray.from_arrays(
            array.offsets, _repair(array.keys), _repair(array.items), mask=_nulls(array)
        ).cast(kind)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        cls = pa.LargeListArray if pa.types.is_large_list(kind) else pa.ListArray
        return cls.from_arrays(array.offsets, _repair(array.values), mask=_nulls(array)).cast(kind)
    if pa.types.is_struct(kind):
        fields = [_repair(array.field(i)) for i in range(kind.num_fields)]
        return pa.StructArray.from_arrays(fields, fields=list(kind), mask=_nulls(array))
    return array


def _nulls(array: pa.Array) -> pa.Array | None:
    return array.is_null() if array.null_count else None
