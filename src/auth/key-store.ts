import { createHash, hash, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import { UUID } from "../ranges.js";

/** Who a call is made by: the API key it presented, resolved. */
export interface Principal {
  /** The key's name from the configuration; safe to log (never the key itself). */
  readonly keyId: string;
  /** The one tenant the key acts for, a lowercase UUID. */
  readonly tenantId: string;
  /** Whether the key may only call methods without side effects. */
  readonly readOnly: boolean;
}

/** One configured key: a Principal plus the SHA-256 of the key. */
interface StoredKey extends Principal {
  readonly hash: Buffer;
}

/** Where the configured keys come from (the two settings of Config). */
export interface KeySources {
  /** Path of a JSON file of key entries (AUTH_KEYS_FILE). */
  authKeysFile: string | undefined;
  /** The same JSON, inline (AUTH_KEYS). */
  authKeys: string | undefined;
}

const SHA256_HEX = /^[0-9a-f]{64}$/i;
// Printable ASCII without spaces: what fits a Bearer token in a header.
const KEY_TEXT = /^[\x21-\x7e]+$/;
const MIN_KEY_LENGTH = 16;

/** The SHA-256 of a key's UTF-8 text, in lowercase hex: what AUTH_KEYS entries store as `sha256`. */
export function hashKey(key: string): string {
  return createHash("sha256").update(key, "utf8").digest("hex");
}

/**
 * The configured API keys, held only as SHA-256 hashes. Each key is bound to
 * exactly one tenant, and may be read-only. Empty: development mode.
 */
export class KeyStore {
  private readonly byHash: ReadonlyMap<string, StoredKey>;

  private constructor(keys: readonly StoredKey[]) {
    this.byHash = new Map(keys.map((k) => [k.hash.toString("hex"), k]));
  }

  /** A store without keys (development mode). */
  static empty(): KeyStore {
    return new KeyStore([]);
  }

  /**
   * Loads the keys of AUTH_KEYS_FILE and AUTH_KEYS (both may be set: the keys
   * of both count). Throws an Error naming the setting and the entry when one
   * is malformed, so that a bad configuration stops the server at startup.
   */
  static load(sources: KeySources): KeyStore {
    const keys: StoredKey[] = [];
    if (sources.authKeysFile !== undefined) {
      let text: string;
      try {
        text = readFileSync(sources.authKeysFile, "utf8");
      } catch (err) {
        throw new Error(`AUTH_KEYS_FILE: cannot read ${sources.authKeysFile}: ${(err as Error).message}`);
      }
      keys.push(...parseKeys(text, "AUTH_KEYS_FILE"));
    }
    if (sources.authKeys !== undefined) keys.push(...parseKeys(sources.authKeys, "AUTH_KEYS"));
    const ids = new Set<string>();
    const hashes = new Set<string>();
    for (const k of keys) {
      if (ids.has(k.keyId)) throw new Error(`AUTH_KEYS: the key id "${k.keyId}" is used twice`);
      if (hashes.has(k.hash.toString("hex"))) throw new Error(`AUTH_KEYS: the key "${k.keyId}" is configured twice`);
      ids.add(k.keyId);
      hashes.add(k.hash.toString("hex"));
    }
    return new KeyStore(keys);
  }

  /** Number of configured keys; 0 means development mode. */
  get size(): number {
    return this.byHash.size;
  }

  /**
   * The principal of a presented key, or undefined when it is not one of
   * ours. The key is hashed first and looked up by its hash, so the lookup's
   * timing can only tell about the hash (which reveals nothing about a key
   * that is not known); the final comparison is in constant time.
   */
  authenticate(key: string): Principal | undefined {
    // The one-shot hash: a fifth of createHash's cost, which was a visible
    // part of every call (issue 6's no-op RPC benchmark).
    const digest = hash("sha256", key, "buffer");
    const stored = this.byHash.get(digest.toString("hex"));
    if (stored === undefined || !timingSafeEqual(digest, stored.hash)) return undefined;
    return { keyId: stored.keyId, tenantId: stored.tenantId, readOnly: stored.readOnly };
  }
}

/**
 * Parses the JSON of AUTH_KEYS / AUTH_KEYS_FILE: an array of
 * `{"id": "...", "tenant": "<uuid>", "sha256": "<64 hex>" | "key": "<text>", "readOnly": false}`.
 */
function parseKeys(text: string, setting: string): StoredKey[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    // The JSON parser's message may quote the text, that is the keys: not repeated.
    throw new Error(`${setting} must be a JSON array of keys ({"id", "tenant", "sha256" or "key", "readOnly"})`);
  }
  if (!Array.isArray(parsed)) throw new Error(`${setting} must be a JSON array of keys`);
  // Set but empty would mean development mode, where any caller acts for any
  // tenant: a deployment that meant to configure keys must not fail open.
  if (parsed.length === 0) throw new Error(`${setting} holds an empty list of keys: give at least one key, or unset ${setting} (development mode)`);
  return parsed.map((entry: unknown, i) => parseEntry(entry, `${setting}[${i}]`));
}

function parseEntry(entry: unknown, where: string): StoredKey {
  if (typeof entry !== "object" || entry === null || Array.isArray(entry)) throw new Error(`${where} must be an object`);
  const e = entry as Record<string, unknown>;
  for (const name of Object.keys(e)) {
    if (!["id", "tenant", "sha256", "key", "readOnly"].includes(name)) {
      throw new Error(`${where} has an unknown field "${name}" (expected id, tenant, sha256 or key, readOnly)`);
    }
  }
  const { id, tenant, sha256, key, readOnly } = e;
  if (typeof id !== "string" || !/^[\w.:@-]{1,100}$/.test(id)) {
    throw new Error(`${where}.id must be a name of 1-100 letters, digits or _.:@- (it appears in logs)`);
  }
  if (typeof tenant !== "string" || !UUID.test(tenant)) throw new Error(`${where}.tenant (key "${id}") must be a tenant UUID`);
  if (readOnly !== undefined && typeof readOnly !== "boolean") throw new Error(`${where}.readOnly (key "${id}") must be true or false`);
  let hash: Buffer;
  if (sha256 !== undefined && key === undefined) {
    if (typeof sha256 !== "string" || !SHA256_HEX.test(sha256)) {
      throw new Error(`${where}.sha256 (key "${id}") must be 64 hex digits, the SHA-256 of the key`);
    }
    hash = Buffer.from(sha256, "hex");
  } else if (key !== undefined && sha256 === undefined) {
    // The key's text is never repeated in a message: it is a secret.
    if (typeof key !== "string" || !KEY_TEXT.test(key) || key.length < MIN_KEY_LENGTH) {
      throw new Error(`${where}.key (key "${id}") must be at least ${MIN_KEY_LENGTH} printable ASCII characters without spaces`);
    }
    hash = Buffer.from(hashKey(key), "hex");
  } else {
    throw new Error(`${where} (key "${id}") needs exactly one of "sha256" (recommended) and "key"`);
  }
  return { keyId: id, tenantId: tenant.toLowerCase(), readOnly: readOnly ?? false, hash };
}
