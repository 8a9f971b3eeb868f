// Configuration that cannot work stops the built server (node
// dist/src/main.js, what npm start and the container run) at once: within
// 5 s, with a non-zero exit code (README "Exit codes") and one JSON line, at
// level error, naming the variable and the cause, and no stack trace. A port
// in use is found before the database is opened. Startup says what it does.
// And DATA_DIR is locked: a
// second server on the same directory refuses to start, naming the directory
// and the PID holding it, while the lock a SIGKILLed server leaves behind does
// not block the next start (issue 12, item 4). A SIGTERM during startup waits
// for the migrations, then stops cleanly.
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { exitOf, freePort, killAll, SERVING } from "../support/processes.js";
import { pidExists } from "./support.js";
import { serverProcess, sharedBuiltCopy } from "../support/built-server.js";

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

/** Starts the server with `env` and expects it to stop by itself within 5 s, as README "Exit codes" says. */
async function expectRefusal(env: NodeJS.ProcessEnv, expected: { code: number; variable: string; msg: RegExp }) {
  const proc = serverProcess(dir, { PORT: String(await freePort()), ...env });
  const { code, signal, ms } = await exitOf(proc, 30_000);
  expect({ code, signal }).toEqual({ code: expected.code, signal: null });
  expect(ms).toBeLessThan(5_000);
  expect(proc.garbage).toEqual([]);
  expect(proc.stderr()).toBe("");
  const errors = proc.logs.filter((l) => l.level === "error");
  expect(errors).toHaveLength(1);
  expect(errors[0]).toMatchObject({ variable: expected.variable, exitCode: expected.code });
  expect(String(errors[0]!.msg)).toMatch(expected.msg);
  expect(String(errors[0]!.msg)).toContain(expected.variable);
  expect(JSON.stringify(proc.logs)).not.toMatch(/\\n\s+at |"stack"/);
  return proc;
}

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
    const proc = await expectRefusal({ DATA_DIR: "memory://", ...env }, { code: 2, variable, msg });
    // A password in the URL is never repeated.
    expect(JSON.stringify(proc.logs)).not.toContain("secret");
  });

  it("AUTH_KEYS_FILE holding an empty list", async () => {
    const file = path.join(scratch, "no-keys.json");
    fs.writeFileSync(file, "[]\n");
    await expectRefusal({ DATA_DIR: "memory://", AUTH_KEYS_FILE: file }, { code: 2, variable: "AUTH_KEYS_FILE", msg: /AUTH_KEYS_FILE holds an empty list of keys/ });
  });

  it("a DATA_DIR that cannot be created or written", async () => {
    const file = path.join(scratch, "a-file");
    fs.writeFileSync(file, "not a directory\n");
    await expectRefusal({ DATA_DIR: path.join(file, "data") }, { code: 2, variable: "DATA_DIR", msg: /DATA_DIR .*a-file\/data is not a writable directory/ });
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
      const proc = await expectRefusal({ PORT: String(port), DATA_DIR: dataDir }, { code: 2, variable: "PORT", msg: new RegExp(`PORT: port ${port} on 127.0.0.1 is in use`) });
      expect(proc.logs.map((l) => l.msg)).not.toContainEqual(expect.stringMatching(/opening PGlite/));
      expect(fs.existsSync(dataDir)).toBe(false);
    } finally {
      holder.close();
    }
  });
});

// The signal test creates the embedded database that the lock test then
// starts on: a new database costs initdb and every migration (over ten seconds
// of CPU on this machine), each start on it about four more, and the lock does
// not depend on the database being new. What a first start says is checked on
// the signal test's start, a first start; that the database it left is whole,
// on the lock test's first. Run alone, the lock test's first server creates
// the database itself.
let createdDataDir: string | undefined;

describe("a signal during startup", () => {
  it("SIGTERM while the embedded database is being created is acted on once startup is over: the migrations finish, exit 0, the lock is gone", async () => {
    const dataDir = path.join(scratch, "signal-during-startup");
    const proc = serverProcess(dir, { PORT: String(await freePort()), DATA_DIR: dataDir });
    await proc.line(`opening PGlite at ${dataDir}`, 60_000);
    proc.child.kill("SIGTERM");
    expect(await exitOf(proc, 120_000)).toMatchObject({ code: 0, signal: null });
    const msgs = proc.logs.map((l) => l.msg);
    const deferred = msgs.indexOf("signal received during startup: stopping once started");
    expect(deferred).toBeGreaterThan(0);
    expect(msgs.indexOf("migrations applied")).toBeGreaterThan(deferred);
    expect(msgs.at(-1)).toBe("database closed; exiting");
    expect(fs.existsSync(path.join(dataDir, "orchestrator-state.lock"))).toBe(false);

    // Startup says what it does, in order, with timings.
    const said = (msg: string) => proc.logs.findIndex((l) => l.msg === msg);
    expect(said("starting orchestrator-state")).toBe(0);
    expect(proc.logs[0]).toMatchObject({ level: "info", pid: proc.child.pid });
    expect(said(`opening PGlite at ${dataDir}`)).toBeGreaterThan(0);
    expect(proc.logs[said(`opening PGlite at ${dataDir}`)]!.note).toMatch(/a new database: this first start creates it/);
    expect(said("migrations applied")).toBeGreaterThan(said(`opening PGlite at ${dataDir}`));
    expect(proc.logs[said("migrations applied")]).toMatchObject({
      migrations: expect.arrayContaining(["20261126000000_initial_schema"]),
      durationMs: expect.any(Number),
    });
    expect(said(SERVING)).toBeGreaterThan(said("migrations applied"));
    expect(proc.logs[said(SERVING)]).toMatchObject({ address: `127.0.0.1:${proc.logs[said(SERVING)]!.port}`, startupMs: expect.any(Number) });
    expect(proc.garbage).toEqual([]);
    expect(proc.stderr()).toBe(""); // nothing but JSON lines on stdout
    // The next start, on the database it left, is the lock test's first.
    createdDataDir = dataDir;
  }, 300_000);
});

describe("DATA_DIR is locked", () => {
  it("a second server on the same DATA_DIR refuses to start, naming the directory and the PID holding it; after a SIGKILL the next start takes the stale lock", async () => {
    const dataDir = createdDataDir ?? path.join(scratch, "locked");
    const first = serverProcess(dir, { PORT: String(await freePort()), DATA_DIR: dataDir });
    await first.line(SERVING, 120_000);
    // After the signal test: the database its interrupted start left is whole, nothing to migrate.
    if (createdDataDir !== undefined) expect(first.logs.map((l) => l.msg)).toContain("database schema is up to date: no migration to apply");
    const pid = first.child.pid!;
    expect(first.garbage).toEqual([]);
    expect(first.stderr()).toBe(""); // nothing but JSON lines on stdout

    const second = await expectRefusal({ DATA_DIR: dataDir }, { code: 3, variable: "DATA_DIR", msg: /DATA_DIR .* is in use by another process/ });
    const refused = second.logs.find((l) => l.level === "error")!;
    expect(refused).toMatchObject({ dataDir, pid });
    expect(String(refused.msg)).toContain(`${dataDir} is in use by another process (PID ${pid})`);
    expect(first.logs.some((l) => l.level === "error")).toBe(false); // the first one never noticed

    // A crash leaves the lock file behind; its PID is gone.
    first.child.kill("SIGKILL");
    await exitOf(first, 10_000);
    expect(pidExists(pid)).toBe(false);
    expect(fs.existsSync(path.join(dataDir, "orchestrator-state.lock"))).toBe(true);

    const third = serverProcess(dir, { PORT: String(await freePort()), DATA_DIR: dataDir });
    await third.line(SERVING, 120_000);
    expect((await third.line(`opening PGlite at ${dataDir}`)).note).toBeUndefined(); // the database exists now
    third.child.kill("SIGTERM");
    expect(await exitOf(third, 20_000)).toMatchObject({ code: 0, signal: null });
    // A clean stop removes the lock.
    expect(fs.existsSync(path.join(dataDir, "orchestrator-state.lock"))).toBe(false);
  }, 300_000);
});
