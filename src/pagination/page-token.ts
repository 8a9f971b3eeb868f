import { createHash } from "node:crypto";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { timestampFromDb, timestampToDb } from "../db/convert.js";
import { invalidArgument } from "../errors/invalid-argument.js";
import type { BoundedRows } from "../limits/byte-budget.js";
import { TIMESTAMP_MAX_SECONDS, TIMESTAMP_MIN_SECONDS } from "../ranges.js";
import { isStorableText } from "../validation/checks.js";

/** Page size used when a request leaves `page_size` at 0. */
export const DEFAULT_PAGE_SIZE = 50;
/** Larger page sizes are treated as this (AIP-158). */
export const MAX_PAGE_SIZE = 1_000;

/** The effective page size of a request: 0 -> default, above max -> max, negative -> INVALID_ARGUMENT. */
export function pageSize(requested: number): number {
  if (requested < 0) throw invalidArgument([{ field: "page_size", description: "must not be negative" }]);
  if (requested === 0) return DEFAULT_PAGE_SIZE;
  return Math.min(requested, MAX_PAGE_SIZE);
}

/**
 * Keyset page tokens: the sort key of the last row of a page, plus a
 * fingerprint of the filters it was made under, base64url-encoded. Opaque to
 * clients; a token reused by another tenant or with other filters, or
 * mangled, answers INVALID_ARGUMENT instead of a wrong page. (Tokens are not
 * signed: a client that edits the keyset only moves its own cursor.)
 */
export const pageToken = {
  encode(scope: TokenScope, key: readonly string[], filters: unknown): string {
    return Buffer.from(JSON.stringify({ k: key, f: fingerprint(scope, filters) })).toString("base64url");
  },

  /** The keyset of a token, or undefined for an empty token (first page). */
  decode(scope: TokenScope, token: string, filters: unknown, keyLength: number): string[] | undefined {
    if (token === "") return undefined;
    let parsed: unknown;
    try {
      parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
    } catch {
      parsed = undefined;
    }
    const { k, f } = (parsed ?? {}) as { k?: unknown; f?: unknown };
    // Tokens are not signed, so a key may be anything: only text PostgreSQL can
    // take as a parameter (no NUL, no lone surrogate) gets near a query.
    if (!Array.isArray(k) || k.length !== keyLength || !k.every((v) => typeof v === "string" && isStorableText(v)) || typeof f !== "string") {
      throw invalidArgument([{ field: "page_token", description: "is not a token this service issued" }]);
    }
    if (f !== fingerprint(scope, filters)) {
      throw invalidArgument([
        { field: "page_token", description: "was issued for another tenant or different filters; start again without a token" },
      ]);
    }
    return k as string[];
  },
};

/**
 * The next_page_token of a page: the keyset `key` of its last row when rows
 * are left after it (`page.more`: past the page size or the byte budget),
 * empty when it is the last page.
 */
export function nextPageToken<Row>(scope: TokenScope, page: BoundedRows<Row>, key: (last: Row) => readonly string[], filters: unknown): string {
  const last = page.rows[page.rows.length - 1];
  return page.more && last !== undefined ? pageToken.encode(scope, key(last), filters) : "";
}

/** What a token is bound to besides its filters: the tenant it was issued to. */
export interface TokenScope {
  tenantId: string;
}

function fingerprint(scope: TokenScope, filters: unknown): string {
  const json = JSON.stringify([scope.tenantId, filters], (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v));
  return createHash("sha256").update(json).digest("base64url").slice(0, 16);
}

/**
 * The (timestamp, id) keyset of a page token issued for `filters`, or
 * undefined for the first page; the timestamp comes back in the form bound into
 * SQL. A token whose timestamp does not parse or is out of range, or whose id
 * does not match `idPattern`, was not issued by us: INVALID_ARGUMENT.
 */
export function keysetFromToken(scope: TokenScope, token: string, filters: unknown, idPattern?: RegExp): [string, string] | undefined {
  const key = pageToken.decode(scope, token, filters, 2);
  if (key === undefined) return undefined;
  let at: Timestamp | undefined;
  try {
    at = timestampFromDb(key[0]!);
  } catch {
    at = undefined;
  }
  // The range check refuses what PostgreSQL would (year 99999), and binding the
  // re-formatted instant, not the token's text, keeps the rest of what the
  // lenient parse lets through (month 13 is January of the next year) from
  // reaching SQL: at worst a forged token moves its own cursor.
  if (at === undefined || at.seconds < TIMESTAMP_MIN_SECONDS || at.seconds > TIMESTAMP_MAX_SECONDS || (idPattern !== undefined && !idPattern.test(key[1]!))) {
    throw invalidArgument([{ field: "page_token", description: "is not a token this service issued" }]);
  }
  return [timestampToDb(at), key[1]!];
}

