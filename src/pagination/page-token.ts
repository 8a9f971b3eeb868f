import { createHash } from "node:crypto";
import { timestampFromDb } from "../db/convert.js";
import { invalidArgument } from "../errors/invalid-argument.js";

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
    if (!Array.isArray(k) || k.length !== keyLength || !k.every((v) => typeof v === "string") || typeof f !== "string") {
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

/** What a token is bound to besides its filters: the tenant it was issued to. */
export interface TokenScope {
  tenantId: string;
}

function fingerprint(scope: TokenScope, filters: unknown): string {
  const json = JSON.stringify([scope.tenantId, filters], (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v));
  return createHash("sha256").update(json).digest("base64url").slice(0, 16);
}

/**
 * The (timestamp text, id) keyset of a page token issued for `filters`, or
 * undefined for the first page. A token whose timestamp does not parse was not
 * issued by us: INVALID_ARGUMENT.
 */
export function keysetFromToken(scope: TokenScope, token: string, filters: unknown): [string, string] | undefined {
  const key = pageToken.decode(scope, token, filters, 2);
  if (key === undefined) return undefined;
  try {
    timestampFromDb(key[0]!);
  } catch {
    throw invalidArgument([{ field: "page_token", description: "is not a token this service issued" }]);
  }
  return [key[0]!, key[1]!];
}
