import pg from "pg";

// How the drivers turn PostgreSQL's text of a value into a JS value, in one
// place for both: pg (its `types` option, per connection or per query) and
// PGlite (its `parsers` option, per instance or per query, merged).
//
// timestamptz and int8 are read as their text form on both backends: the
// default parsers turn timestamptz into a JS Date, which drops microseconds,
// and PGlite turns int8 into a lossy number. src/db/convert.ts parses both.
// jsonb is parsed by the drivers (JSON.parse), except in a query that asks
// for its text (JSONB_AS_TEXT).

const TIMESTAMPTZ_OID = 1184;
const INT8_OID = 20;
const JSONB_OID = 3802;
const asText = (value: string) => value;

/** pg's `types` of every connection. */
export const PG_TYPES = {
  getTypeParser: (oid: number, format?: string) =>
    oid === TIMESTAMPTZ_OID || oid === INT8_OID ? asText : pg.types.getTypeParser(oid, format as "text"),
};

/** PGlite's `parsers` of the instance. */
export const PGLITE_PARSERS = { [TIMESTAMPTZ_OID]: asText, [INT8_OID]: asText };

/**
 * Knex `.options()` of a query whose jsonb values are read as PostgreSQL's
 * text of them, unparsed, on both drivers: for readers that use the text
 * itself (the stream's encoder writes a context straight from it; see
 * jsonAttributesFromText in models/plain-rows.ts). Knex hands the options to
 * the driver's query: pg's per-query `types` replace the connection's (so
 * they fall back to PG_TYPES), PGlite's per-query `parsers` are merged with
 * the instance's.
 */
export const JSONB_AS_TEXT = {
  types: { getTypeParser: (oid: number, format?: string) => (oid === JSONB_OID ? asText : PG_TYPES.getTypeParser(oid, format)) },
  parsers: { [JSONB_OID]: asText },
} as const;
