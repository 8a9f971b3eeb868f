// Configuration that cannot work stops the built server (node
// dist/src/main.js, what npm start and the container run) at once: within
// 5 s, with a non-zero exit code (README "Exit codes") and one JSON line, at
// level error, naming the variable and the cause, and no stack trace. A port
// in use is found before the database is opened. The embedded database's own
// refusal (DATA_DIR in use by another server) and a signal during its
// creation: embedded-database.pglite.test.ts.
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { sharedBuiltCopy } from "../support/built-server.js";
import { killAll } from "../support/processes.js";
import { expectRefusal } from "./support.js";

let dir: string;
let scratch: string;
beforeAll(async () => {
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), "orchestrator-state-fail-fast-data-"));
  dir = await sharedBuiltCopy();
}, 300_000);
afterEach(killAll);
afterAll(() => {
  fs.rmSync(scratch, { recursive: true, force: true });
});

describe("misconfiguration stops the built server within 5 s with one JSON line naming it", () => {
  it.each([
    ["a DATABASE_URL that is not a URL", { DATABASE_URL: "notaurl" }, /DATABASE_URL must be a PostgreSQL URL.*not a URL/],
    ["a DATABASE_URL of another database (mysql://)", { DATABASE_URL: "mysql://app:secret@127.0.0.1:3306/app" }, /DATABASE_URL .*scheme is "mysql:\/\/"/],
    ["an empty DATABASE_URL (it used to open PGlite silently)", { DATABASE_URL: "" }, /DATABASE_URL is set but empty/],
    ["an empty DATA_DIR", { DATA_DIR: "  " }, /DATA_DIR is set but empty/],
    ["a LOG_LEVEL that is not a level", { LOG_LEVEL: "loud" }, /LOG_LEVEL must be one of debug, info, warn, error, got "loud"/],
    ["AUTH_KEYS holding an empty list (it used to fail open into development mode)", { AUTH_KEYS: "[]" }, /AUTH_KEYS holds an empty list of keys/],
  ])("%s", async (_name, env, msg) => {
    const variable = Object.keys(env)[0]!;
    const proc = await expectRefusal(dir, { DATA_DIR: "memory://", ...env }, { code: 2, variable, msg });
    // A password in the URL is never repeated.
    expect(JSON.stringify(proc.logs)).not.toContain("secret");
  });

  it("AUTH_KEYS_FILE holding an empty list", async () => {
    const file = path.join(scratch, "no-keys.json");
    fs.writeFileSync(file, "[]\n");
    await expectRefusal(dir, { DATA_DIR: "memory://", AUTH_KEYS_FILE: file }, { code: 2, variable: "AUTH_KEYS_FILE", msg: /AUTH_KEYS_FILE holds an empty list of keys/ });
  });

  it("a DATA_DIR that cannot be created or written", async () => {
    const file = path.join(scratch, "a-file");
    fs.writeFileSync(file, "not a directory\n");
    await expectRefusal(dir, { DATA_DIR: path.join(file, "data") }, { code: 2, variable: "DATA_DIR", msg: /DATA_DIR .*a-file\/data is not a writable directory/ });
  });

  it("a PostgreSQL server that rejects the password (28P01), however often it is asked", async () => {
    // A server speaking just enough of the protocol to refuse: it reads the
    // startup message and answers the ErrorResponse PostgreSQL sends for a wrong password.
    const refusals: number[] = [];
    const fake = net.createServer((socket) => {
      socket.once("data", () => {
        const fields = ["SFATAL", "VFATAL", "C28P01", 'Mpassword authentication failed for user "app"'].map((f) => Buffer.from(`${f}\0`));
        const body = Buffer.concat([...fields, Buffer.from([0])]);
        const header = Buffer.alloc(5);
        header.write("E", 0);
        header.writeInt32BE(body.length + 4, 1);
        refusals.push(Date.now());
        socket.end(Buffer.concat([header, body]));
      });
      socket.on("error", () => {});
    });
    await new Promise<void>((resolve) => fake.listen(0, "127.0.0.1", resolve));
    const { port } = fake.address() as net.AddressInfo;
    try {
      const proc = await expectRefusal(
        dir,
        { DATABASE_URL: `postgres://app:wrong-secret@127.0.0.1:${port}/app` },
        { code: 2, variable: "DATABASE_URL", msg: /DATABASE_URL: password authentication failed \(28P01/ },
      );
      expect(refusals.length).toBeGreaterThanOrEqual(1);
      expect(JSON.stringify(proc.logs)).not.toContain("wrong-secret");
    } finally {
      fake.close();
    }
  });

  it("a PORT in use, found before the database is opened", async () => {
    const holder = net.createServer();
    await new Promise<void>((resolve) => holder.listen(0, "127.0.0.1", resolve));
    const port = (holder.address() as net.AddressInfo).port;
    const dataDir = path.join(scratch, "port-in-use");
    try {
      const proc = await expectRefusal(dir, { PORT: String(port), DATA_DIR: dataDir }, { code: 2, variable: "PORT", msg: new RegExp(`PORT: port ${port} on 127.0.0.1 is in use`) });
      expect(proc.logs.map((l) => l.msg)).not.toContainEqual(expect.stringMatching(/opening PGlite/));
      expect(fs.existsSync(dataDir)).toBe(false);
    } finally {
      holder.close();
    }
  });
});
