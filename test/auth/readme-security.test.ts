// The README's Security section and configuration table match the code: its
// recipe makes a key and the hash the server accepts, its example key list
// loads, and the auth and TLS settings it documents are the ones read, with
// their defaults. The recipe runs in the run's shared built copy of the
// repository (test/lifecycle/support.ts): `npm run hash-key` builds dist/
// first when it is missing or stale, and in the repository itself that was a
// whole build of its own, most of this file's time.
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { hashKey, KeyStore } from "../../src/auth/key-store.js";
import { defaultConfig, loadConfig } from "../../src/config.js";
import { sharedBuiltCopy } from "../support/built-server.js";

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, "../..");
const readme = readFileSync(path.join(root, "README.md"), "utf8");
const security = readme.slice(readme.indexOf("\n## Security\n"), readme.indexOf("\n## ", readme.indexOf("\n## Security\n") + 1));

describe("README, Security", () => {
  it("the key recipe makes a random key and its SHA-256 twice over (npm run hash-key, openssl)", { timeout: 360_000 }, async () => {
    const block = /```sh\n(KEY=\$\(openssl rand[\s\S]*?)```/.exec(security)?.[1];
    expect(block).toBeDefined();
    const alternative = /# or: (.*)$/m.exec(block!)?.[1];
    expect(alternative).toBeDefined();
    const script = `${block}\n${alternative}\necho "$KEY"\n`;
    const { stdout } = await run("bash", ["-euo", "pipefail", "-c", script], { cwd: await sharedBuiltCopy() });
    const [viaNpm, viaOpenssl, key] = stdout.trim().split("\n");
    expect(key).toMatch(/^[0-9a-f]{64}$/);
    expect(viaNpm).toBe(hashKey(key!));
    expect(viaOpenssl).toBe(hashKey(key!));
  });

  it("the example key list loads, with the fields the table documents", () => {
    const json = /```json\n([\s\S]*?)```/.exec(security)?.[1];
    const keys = ["a".repeat(32), "b".repeat(32)];
    let n = 0;
    const filled = json!.replace(/<64 hex digits>/g, () => hashKey(keys[n++]!));
    const store = KeyStore.load({ authKeysFile: undefined, authKeys: filled });
    expect(store.size).toBe(2);
    expect(store.authenticate(keys[0]!)).toMatchObject({ keyId: "orchestrator-eu", readOnly: false });
    expect(store.authenticate(keys[1]!)).toMatchObject({ keyId: "dashboard", readOnly: true });
    for (const field of ["id", "tenant", "sha256", "key", "readOnly"]) expect(security).toContain(`| \`${field}\` |`);
  });

  it("the configuration table documents every auth and TLS setting with its default", () => {
    const rows = new Map([...readme.matchAll(/^\| `([A-Z_]+)` \| ([^|]+) \|/gm)].map((m) => [m[1]!, m[2]!.trim()]));
    const settings = {
      AUTH_KEYS_FILE: ["authKeysFile", "unset"],
      AUTH_KEYS: ["authKeys", "unset"],
      AUTH_PUBLIC_HEALTH: ["authPublicHealth", "`true`"],
      AUTH_PUBLIC_REFLECTION: ["authPublicReflection", "`true`"],
      TLS_CERT_FILE: ["tlsCertFile", "unset"],
      TLS_KEY_FILE: ["tlsKeyFile", "unset"],
    } as const;
    for (const [name, [field, documented]] of Object.entries(settings)) {
      expect(rows.get(name), name).toBe(documented);
      expect(String(defaultConfig[field] ?? "unset").replace(/^(true|false)$/, "`$1`"), name).toBe(documented);
      // The variable is the one read.
      const value = field.startsWith("authPublic") ? "false" : "/x";
      expect(loadConfig({ [name]: value })[field], name).toBe(field.startsWith("authPublic") ? false : "/x");
    }
  });
});
