// The built server (node dist/src/main.js) on the embedded database, PGlite in
// DATA_DIR: the directory is locked, so a second server on it refuses to
// start, naming the directory and the PID holding it, while the lock a
// SIGKILLed server leaves behind does not block the next start (issue 12, item
// 4); and a SIGTERM while the database is being created waits for the
// migrations, then stops cleanly. PGlite runs only (npm test without
// TEST_DATABASE_URL): what they test is the embedded database's.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { serverProcess, sharedBuiltCopy } from "../support/built-server.js";
import { exitOf, freePort, killAll, SERVING } from "../support/processes.js";
import { expectRefusal, pidExists } from "./support.js";

let dir: string;
let scratch: string;
beforeAll(async () => {
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), "orchestrator-state-embedded-data-"));
  dir = await sharedBuiltCopy();
}, 300_000);
afterEach(killAll);
afterAll(() => {
  fs.rmSync(scratch, { recursive: true, force: true });
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

    const second = await expectRefusal(dir, { DATA_DIR: dataDir }, { code: 3, variable: "DATA_DIR", msg: /DATA_DIR .* is in use by another process/ });
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
