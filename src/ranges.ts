// Ranges that several layers check against, defined once here: a leaf module
// (it imports nothing), so errors, validation, pagination, tenancy, the server
// and the services can all use it without importing one another.

/**
 * The longest delay Node's timers (and PostgreSQL's statement_timeout) take:
 * 2^31-1 ms, about 24.8 days. A longer timer would fire after 1 ms, so a
 * deadline further away is treated as none.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** google.protobuf.Timestamp's valid range in seconds: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z. */
export const TIMESTAMP_MIN_SECONDS = -62_135_596_800n;
export const TIMESTAMP_MAX_SECONDS = 253_402_300_799n;

/**
 * A UTF-16 surrogate without its pair: it has no UTF-8 form, so PostgreSQL
 * cannot store it and gRPC's percent-encoding of an error message would throw.
 */
export const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** A UUID in its text form, any case: tenant ids, decision ids. */
export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * A positive int8 in decimal text, without leading zeros (at most 18 digits,
 * so always below 2^63): the row versions behind etags, transition ids.
 */
export const POSITIVE_INT8_TEXT = /^[1-9]\d{0,17}$/;
