import { create } from "@bufbuild/protobuf";
import { type Duration, DurationSchema, type Timestamp, TimestampSchema } from "@bufbuild/protobuf/wkt";

// Conversions between the database's text forms (see database.ts) and protobuf
// values, shared by every resource's row mapping.

/**
 * Parses PostgreSQL's text form of a timestamptz ("2026-11-26 19:33:29.692123+00",
 * any UTC offset) into a Timestamp, keeping every microsecond.
 */
export function timestampFromDb(text: string): Timestamp {
  const parts = timestampPartsFromDb(text);
  return create(TimestampSchema, { seconds: BigInt(parts.seconds), nanos: parts.nanos });
}

/** Seconds since the epoch and nanoseconds of a timestamptz text (see timestampFromDb). */
export interface TimestampParts {
  /** Whole seconds since 1970-01-01T00:00:00Z (an integer; negative before 1970). */
  seconds: number;
  /** Nanoseconds, 0 to 999,999,000 (whole microseconds). */
  nanos: number;
}

/**
 * timestampFromDb's parsing without the message: streaming encodes the parts
 * directly. Reads the form PostgreSQL sends (ISO DateStyle) without a regular
 * expression; anything else takes the general parser, which accepts the same
 * forms as before and throws for the rest.
 */
export function timestampPartsFromDb(text: string): TimestampParts {
  return fastTimestampParts(text) ?? regexTimestampParts(text);
}

const TIMESTAMP_RE = /^(\d{4,})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?([+-])(\d\d)(?::?(\d\d))?(?::?(\d\d))?$/;

function regexTimestampParts(text: string): TimestampParts {
  const m = TIMESTAMP_RE.exec(text);
  if (m === null) throw new Error(`unexpected timestamptz text "${text}"`);
  const [, y, mo, d, h, mi, s, frac = "", sign, oh, om = "0", os = "0"] = m;
  const utcMs = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s));
  // Date.UTC maps years 0-99 to 1900-1999; fix them up.
  const date = new Date(utcMs);
  if (Number(y) < 100) date.setUTCFullYear(Number(y));
  const offsetSeconds = (sign === "-" ? -1 : 1) * (Number(oh) * 3600 + Number(om) * 60 + Number(os));
  return checkedParts(date.getTime() / 1000 - offsetSeconds, Number(frac.padEnd(6, "0")) * 1000, text);
}

/**
 * "YYYY-MM-DD HH:MM:SS[.f{1,6}]±HH[:MM]" with a year of 100 or later, the form
 * PostgreSQL sends; undefined for any other text.
 */
function fastTimestampParts(text: string): TimestampParts | undefined {
  const n = text.length;
  if (n < 22) return undefined;
  const y = digits(text, 0, 4);
  const mo = digits(text, 5, 2);
  const d = digits(text, 8, 2);
  const h = digits(text, 11, 2);
  const mi = digits(text, 14, 2);
  const s = digits(text, 17, 2);
  const sep = text.charCodeAt(10);
  if (
    y < 100 || mo < 0 || d < 0 || h < 0 || mi < 0 || s < 0 ||
    text.charCodeAt(4) !== 45 || text.charCodeAt(7) !== 45 || (sep !== 32 && sep !== 84) ||
    text.charCodeAt(13) !== 58 || text.charCodeAt(16) !== 58
  ) {
    return undefined;
  }
  let i = 19;
  let micros = 0;
  if (text.charCodeAt(i) === 46) {
    // 1 to 6 fraction digits, read as a fraction of a second.
    let scale = 100_000;
    for (i++; i < n && scale >= 1; i++, scale /= 10) {
      const c = text.charCodeAt(i) - 48;
      if (c < 0 || c > 9) break;
      micros += c * scale;
    }
    if (scale === 100_000) return undefined;
  }
  const sign = text.charCodeAt(i);
  if (sign !== 43 && sign !== 45) return undefined;
  const oh = digits(text, i + 1, 2);
  let om = 0;
  i += 3;
  if (i + 3 === n && text.charCodeAt(i) === 58) {
    om = digits(text, i + 1, 2);
    i += 3;
  }
  if (oh < 0 || om < 0 || i !== n) return undefined;
  const offsetSeconds = (sign === 45 ? -1 : 1) * (oh * 3600 + om * 60);
  return checkedParts(Date.UTC(y, mo - 1, d, h, mi, s) / 1000 - offsetSeconds, micros * 1000, text);
}

/** The non-negative integer of `count` decimal digits at `start`, or -1. */
function digits(text: string, start: number, count: number): number {
  let value = 0;
  for (let i = start; i < start + count; i++) {
    const c = text.charCodeAt(i) - 48;
    if (!(c >= 0 && c <= 9)) return -1;
    value = value * 10 + c;
  }
  return value;
}

function checkedParts(seconds: number, nanos: number, text: string): TimestampParts {
  if (!Number.isSafeInteger(seconds)) throw new Error(`timestamptz text "${text}" is out of range`);
  return { seconds, nanos };
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

/** Outcome counters (int8 read as text, or counted by an aggregate) and the success rate derived from them. */
export interface OutcomeCounts {
  total: bigint;
  successful: bigint;
  failed: bigint;
  /**
   * successful / total as float8 division (the same division the statistics
   * queries order and filter by); 0 when there is no outcome.
   */
  successRate: number;
}

/**
 * The counts of a statistics row, a decision summary or a time bucket: one
 * place that says how the success rate is derived, so that every message
 * reporting one agrees with the others and with the queries.
 */
export function outcomeCounts(total: string, successful: string, failed: string): OutcomeCounts {
  const all = BigInt(total);
  const succeeded = BigInt(successful);
  return { total: all, successful: succeeded, failed: BigInt(failed), successRate: all === 0n ? 0 : Number(succeeded) / Number(all) };
}
