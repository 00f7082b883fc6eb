-- What spans dropped until now (issue 15): the kinds of event and link attribute values, stored as the
-- kinds of span attributes are (text in the attribute map, the kinds of non-strings in a parallel Enum
-- map per event and per link); the instrumentation scope's attributes and schema URL; the resource's
-- schema URL; and link flags. Rows stored before this migration read them as empty: no kinds (every
-- event and link value a string, as they were shown), no scope attributes, empty schema URLs, flags 0.
-- A Nested column added later reads, for older rows, as one default per element of its siblings.
ALTER TABLE spans
    ADD COLUMN IF NOT EXISTS resource_schema_url LowCardinality(String) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS scope_attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS scope_attribute_types Map(LowCardinality(String), Enum8('empty' = 0, 'string' = 1, 'bool' = 2, 'int' = 3, 'double' = 4, 'array' = 5, 'kvlist' = 6, 'bytes' = 7)) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS scope_schema_url LowCardinality(String) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS `events.attribute_types` Array(Map(LowCardinality(String), Enum8('empty' = 0, 'string' = 1, 'bool' = 2, 'int' = 3, 'double' = 4, 'array' = 5, 'kvlist' = 6, 'bytes' = 7))) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS `links.attribute_types` Array(Map(LowCardinality(String), Enum8('empty' = 0, 'string' = 1, 'bool' = 2, 'int' = 3, 'double' = 4, 'array' = 5, 'kvlist' = 6, 'bytes' = 7))) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS `links.flags` Array(UInt32) CODEC(ZSTD(1));
