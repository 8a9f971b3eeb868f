// Loading API keys (AUTH_KEYS_FILE, AUTH_KEYS), the hash-key script, and the
// configuration of authentication: a malformed setting stops the server with
// a message naming it and never repeating a key.
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WorkflowStateService, WorkflowStatus } from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { hashKey, KeyStore } from "../../src/auth/key-store.js";
import { loadConfig } from "../../src/config.js";
import { codeOf } from "../support/errors.js";
import { newTenant, startTestServer } from "../support/server.js";
import { authClient, newKey } from "./support.js";

const root = path.resolve(import.meta.dirname, "../..");
let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "orchestrator-state-keys-"));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

const load = (authKeys: string) => () => KeyStore.load({ authKeys, authKeysFile: undefined });

describe("KeyStore", () => {
  const tenant = newTenant();

  it("authenticates a key configured by its SHA-256 or in plain text, and nothing else", () => {
    const hashed = newKey();
    const plain = newKey();
    const store = KeyStore.load({
      authKeysFile: undefined,
      authKeys: JSON.stringify([
        { id: "hashed", tenant: tenant.toUpperCase(), sha256: hashKey(hashed).toUpperCase(), readOnly: true },
        { id: "plain", tenant, key: plain },
      ]),
    });
    expect(store.size).toBe(2);
    expect(store.authenticate(hashed)).toEqual({ keyId: "hashed", tenantId: tenant, readOnly: true });
    expect(store.authenticate(plain)).toEqual({ keyId: "plain", tenantId: tenant, readOnly: false });
    expect(store.authenticate(hashKey(hashed))).toBeUndefined();
    expect(store.authenticate(`${plain} `)).toBeUndefined();
    expect(store.authenticate("")).toBeUndefined();
  });

  it("without AUTH_KEYS_FILE and AUTH_KEYS is empty: development mode", () => {
    expect(KeyStore.load({ authKeys: undefined, authKeysFile: undefined }).size).toBe(0);
  });

  it("takes the keys of AUTH_KEYS_FILE and AUTH_KEYS together", () => {
    const fromFile = newKey();
    const fromEnv = newKey();
    const file = path.join(dir, "both.json");
    fs.writeFileSync(file, JSON.stringify([{ id: "file", tenant, sha256: hashKey(fromFile) }]));
    const store = KeyStore.load({ authKeysFile: file, authKeys: JSON.stringify([{ id: "env", tenant, sha256: hashKey(fromEnv) }]) });
    expect(store.authenticate(fromFile)?.keyId).toBe("file");
    expect(store.authenticate(fromEnv)?.keyId).toBe("env");
  });

  const secret = "s3cret-key-do-not-print-0123456789";
  it.each([
    ["not JSON", `{"id": "a", "key": "${secret}"`, /^AUTH_KEYS must be a JSON array/],
    ["not an array", JSON.stringify({ id: "a", tenant, key: secret }), /^AUTH_KEYS must be a JSON array/],
    // Issue 12 item 10: an empty list used to fail open into development mode.
    ["an empty list", "[]", /^AUTH_KEYS holds an empty list of keys/],
    ["an entry without an id", JSON.stringify([{ tenant, key: secret }]), /AUTH_KEYS\[0\]\.id/],
    ["an id with spaces", JSON.stringify([{ id: "a b", tenant, key: secret }]), /AUTH_KEYS\[0\]\.id/],
    ["a tenant that is not a UUID", JSON.stringify([{ id: "a", tenant: "acme", key: secret }]), /AUTH_KEYS\[0\]\.tenant/],
    ["a short sha256", JSON.stringify([{ id: "a", tenant, sha256: "abc" }]), /AUTH_KEYS\[0\]\.sha256/],
    ["both sha256 and key", JSON.stringify([{ id: "a", tenant, sha256: hashKey(secret), key: secret }]), /exactly one of "sha256"/],
    ["neither sha256 nor key", JSON.stringify([{ id: "a", tenant }]), /exactly one of "sha256"/],
    ["a key shorter than 16 characters", JSON.stringify([{ id: "a", tenant, key: "short-secret" }]), /AUTH_KEYS\[0\]\.key/],
    ["a key with a space", JSON.stringify([{ id: "a", tenant, key: `${secret} x` }]), /AUTH_KEYS\[0\]\.key/],
    ["readOnly that is not a boolean", JSON.stringify([{ id: "a", tenant, key: secret, readOnly: "yes" }]), /readOnly/],
    ["an unknown field", JSON.stringify([{ id: "a", tenant, key: secret, tenants: [tenant] }]), /unknown field "tenants"/],
    ["an id used twice", JSON.stringify([{ id: "a", tenant, key: secret }, { id: "a", tenant, key: `${secret}-2` }]), /"a" is used twice/],
    ["a key configured twice", JSON.stringify([{ id: "a", tenant, key: secret }, { id: "b", tenant, sha256: hashKey(secret) }]), /configured twice/],
  ])("%s stops the server with a message naming the setting, without the key", (_name, json, message) => {
    let thrown: unknown;
    try {
      load(json)();
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(Error);
    expect((thrown as Error).message).toMatch(message);
    expect((thrown as Error).message).not.toContain(secret);
    expect((thrown as Error).message).not.toContain("do-not-print");
  });

  it("an unreadable AUTH_KEYS_FILE stops the server, naming it", () => {
    expect(() => KeyStore.load({ authKeysFile: path.join(dir, "missing.json"), authKeys: undefined })).toThrow(/^AUTH_KEYS_FILE: cannot read/);
  });

  it("an AUTH_KEYS_FILE holding an empty list stops the server instead of falling back to development mode", () => {
    const file = path.join(dir, "empty.json");
    fs.writeFileSync(file, "[]\n");
    expect(() => KeyStore.load({ authKeysFile: file, authKeys: undefined })).toThrow(/^AUTH_KEYS_FILE holds an empty list of keys/);
    // Keys in the other setting do not make an empty file acceptable: it is still a mistake.
    const other = JSON.stringify([{ id: "a", tenant, key: secret }]);
    expect(() => KeyStore.load({ authKeysFile: file, authKeys: other })).toThrow(/^AUTH_KEYS_FILE holds an empty list/);
  });

  it("a malformed AUTH_KEYS_FILE names AUTH_KEYS_FILE", () => {
    const file = path.join(dir, "bad.json");
    fs.writeFileSync(file, JSON.stringify([{ id: "a", tenant: "acme", key: secret }]));
    expect(() => KeyStore.load({ authKeysFile: file, authKeys: undefined })).toThrow(/^AUTH_KEYS_FILE\[0\]\.tenant/);
  });
});

describe("configuration", () => {
  it("reads AUTH_KEYS_FILE, AUTH_KEYS, AUTH_PUBLIC_*, TLS_*_FILE; the public services default to true", () => {
    expect(loadConfig({})).toMatchObject({
      authKeysFile: undefined, authKeys: undefined, authPublicHealth: true, authPublicReflection: true,
      tlsCertFile: undefined, tlsKeyFile: undefined,
    });
    expect(
      loadConfig({
        AUTH_KEYS_FILE: "/etc/keys.json", AUTH_KEYS: "[]", AUTH_PUBLIC_HEALTH: "false", AUTH_PUBLIC_REFLECTION: "false",
        TLS_CERT_FILE: "/etc/cert.pem", TLS_KEY_FILE: "/etc/key.pem",
      }),
    ).toMatchObject({
      authKeysFile: "/etc/keys.json", authKeys: "[]", authPublicHealth: false, authPublicReflection: false,
      tlsCertFile: "/etc/cert.pem", tlsKeyFile: "/etc/key.pem",
    });
  });

  it.each(["AUTH_PUBLIC_HEALTH", "AUTH_PUBLIC_REFLECTION"])("%s other than true or false stops the server, naming it", (name) => {
    expect(() => loadConfig({ [name]: "yes" })).toThrow(new RegExp(`^${name} must be true or false`));
  });

  it("a server with keys from AUTH_KEYS_FILE holding only hashes authenticates them", async () => {
    const tenant = newTenant();
    const key = newKey();
    const file = path.join(dir, "server.json");
    fs.writeFileSync(file, JSON.stringify([{ id: "from-file", tenant, sha256: hashKey(key) }]));
    const t = await startTestServer({ authKeysFile: file });
    try {
      const client = authClient(WorkflowStateService, t.baseUrl, { key });
      await client.saveWorkflowExecution({ execution: { executionId: "e", workflowName: "w", status: WorkflowStatus.RUNNING } });
      expect(await t.knex("workflow_executions").where({ tenant_id: tenant, execution_id: "e" }).select("tenant_id")).toHaveLength(1);
      expect(await codeOf(authClient(WorkflowStateService, t.baseUrl, { tenant }).getWorkflowExecution({ executionId: "e" }))).toBe(
        Code.Unauthenticated,
      );
    } finally {
      await t.close();
    }
  });
});

describe("npm run hash-key", () => {
  it("prints the SHA-256 of the key given on stdin, as a key entry's sha256", async () => {
    const key = newKey();
    const out = await new Promise<string>((resolve, reject) => {
      const child = execFile(process.execPath, ["--import", "tsx", "src/auth/hash-key-cli.ts"], { cwd: root }, (err, stdout) =>
        err ? reject(err) : resolve(stdout),
      );
      child.stdin!.end(`${key}\n`);
    });
    expect(out).toBe(`${hashKey(key)}\n`);
    expect(hashKey("abc")).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"); // FIPS 180-2 test vector
    expect(KeyStore.load({ authKeysFile: undefined, authKeys: JSON.stringify([{ id: "k", tenant: newTenant(), sha256: out.trim() }]) }).authenticate(key)?.keyId).toBe("k");
  });
});
