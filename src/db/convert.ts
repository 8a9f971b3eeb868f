import { create } from "@bufbuild/protobuf";
import { type Duration, DurationSchema, type Timestamp, TimestampSchema } from "@bufbuild/protobuf/wkt";

// Conversions between the database's text forms (see database.ts) and protobuf
// values, shared by every resource's row mapping.

/**
 * Parses PostgreSQL's text form of a timestamptz ("2026-11-26 19:33:29.692123+00",
 * any UTC offset) into a Timestamp, keeping every microsecond.
 */
export function timestampFromDb(text: string): Timestamp {
  const m = /^(\d{4,})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?([+-])(\d\d)(?::?(\d\d))?(?::?(\d\d))?$/.exec(text);
  if (m === null) throw new Error(`unexpected timestamptz text "${text}"`);
  const [, y, mo, d, h, mi, s, frac = "", sign, oh, om = "0", os = "0"] = m;
  const utcMs = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s));
  // Date.UTC maps years 0-99 to 1900-1999; fix them up.
  const date = new Date(utcMs);
  if (Number(y) < 100) date.setUTCFullYear(Number(y));
  const offsetSeconds = (sign === "-" ? -1 : 1) * (Number(oh) * 3600 + Number(om) * 60 + Number(os));
  const seconds = BigInt(date.getTime() / 1000 - offsetSeconds);
  return create(TimestampSchema, { seconds, nanos: Number(frac.padEnd(6, "0")) * 1000 });
}

/** Like timestampFromDb, for a nullable column. */
export function optionalTimestampFromDb(text: string | null): Timestamp | undefined {
  return text === null ? undefined : timestampFromDb(text);
}

/**
 * Formats a Timestamp as an ISO-8601 UTC string with microseconds, the form
 * bound into SQL. Nanoseconds below a microsecond are truncated, as the contract
 * says. The caller has validated the range (years 1-9999).
 */
export function timestampToDb(ts: Timestamp): string {
  const iso = new Date(Number(ts.seconds) * 1000).toISOString(); // YYYY-MM-DDTHH:MM:SS.000Z
  const micros = String(Math.floor(ts.nanos / 1000)).padStart(6, "0");
  return `${iso.slice(0, 19)}.${micros}Z`;
}

/** Parses an int8 column (read as text) into a JS number; our counters stay far below 2^53. */
export function int8FromDb(text: string | number): number {
  return Number(text);
}

/**
 * A Duration as whole microseconds, the form duration columns (`*_us`, int8)
 * store, so that sums, averages and percentiles are plain SQL. Sub-microsecond
 * nanos are truncated; unset is 0. The caller has validated the range.
 */
export function durationToMicros(d: Duration | undefined): number {
  if (d === undefined) return 0;
  return Number(d.seconds) * 1_000_000 + Math.floor(d.nanos / 1000);
}

/** The Duration of a microseconds column (int8 read as text, or a rounded aggregate). */
export function durationFromMicros(micros: string | number | bigint): Duration {
  const us = BigInt(micros);
  return create(DurationSchema, { seconds: us / 1_000_000n, nanos: Number(us % 1_000_000n) * 1000 });
}
