// `npm start` as operators and container runtimes use it, in a copy of the
// repository: it builds dist/ when missing (and only then, or when a source is
// newer), runs the built server so that SIGTERM sent to npm reaches node (npm
// exits 0, the port is free, no node is left behind), and a built tree
// installed with `npm ci --omit=dev` (no TypeScript, no tsx) starts, migrates
// and hashes keys. On PGlite the server opens a migrated DATA_DIR of the
// file's own (an empty one would cost initdb and every migration at each
// start; the migrations run in the npm run migrate test); with
// TEST_DATABASE_URL it uses that PostgreSQL database.
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { WorkflowStatus } from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { hashKey } from "../../src/auth/key-store.js";
import { workflowClient } from "../support/clients.js";
import { newTenant } from "../support/server.js";
import { exitOf, freePort, killAll, portIsFree, type Proc, root, run, SERVING } from "../support/processes.js";
import { copyRepository, pidExists } from "./support.js";
import { createPgliteDataDir, postgresEnv } from "../support/backend.js";

const npm = process.platform === "win32" ? "npm.cmd" : "npm";
let database: NodeJS.ProcessEnv;
// What npm itself prints around a script (its banner), not the server's lines.
const isNpmBanner = (line: string) => line === "" || line.startsWith("> ");

let dir: string;
const dirs: string[] = [];
beforeAll(async () => {
  dir = copyRepository("orchestrator-state-npm-start-", { nodeModules: true });
  dirs.push(dir);
  if (process.env.TEST_DATABASE_URL) database = postgresEnv();
  else {
    database = { DATA_DIR: await createPgliteDataDir("orchestrator-state-npm-start-data-") };
    dirs.push(database.DATA_DIR!);
  }
});
afterEach(killAll);
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

/** `npm start` in `cwd`, up to its "serving" line. */
async function npmStart(cwd: string, env: NodeJS.ProcessEnv = {}): Promise<{ proc: Proc; port: number; pid: number }> {
  const port = await freePort();
  const proc = run(npm, ["start"], cwd, { HOST: "127.0.0.1", PORT: String(port), ...database, ...env });
  await proc.line(SERVING, 240_000);
  const pid = (await proc.line("starting orchestrator-state")).pid as number;
  return { proc, port, pid };
}

/** Saves and reads back one execution: the server serves. */
async function roundTrip(port: number): Promise<void> {
  const client = workflowClient(`http://127.0.0.1:${port}`, newTenant());
  const saved = await client.saveWorkflowExecution({ execution: { executionId: "e-1", workflowName: "wf", status: WorkflowStatus.RUNNING } });
  expect((await client.getWorkflowExecution({ executionId: "e-1" })).execution).toEqual(saved.execution);
}

describe("README \"Start it\"", () => {
  it("shows only commands this file runs (npm start, npm ci --omit=dev, npm run migrate, npm run --silent hash-key)", () => {
    const readme = fs.readFileSync(path.join(root, "README.md"), "utf8");
    const section = readme.slice(readme.indexOf("### Start it\n"), readme.indexOf("### Stop it\n"));
    const block = /```sh\n([\s\S]*?)```/.exec(section)![1]!;
    const commands = block
      .split("\n")
      .map((line) => line.replace(/#.*$/, "").trim())
      .filter((line) => line !== "")
      .flatMap((line) => line.split(/ && | \| /))
      .filter((command) => command.startsWith("npm "));
    const ran: Record<string, string> = {
      "npm ci": "npm ci (with dev dependencies) is CI's first step",
      "npm start": 'run(npm, ["start"]',
      "npm ci --omit=dev": '"ci", "--omit=dev"',
      "npm run migrate": '"run", "--silent", "migrate"',
      "npm run --silent hash-key": '"run", "--silent", "hash-key"',
    };
    const self = fs.readFileSync(path.join(root, "test/lifecycle/npm-start.test.ts"), "utf8");
    expect(new Set(commands)).toEqual(new Set(Object.keys(ran)));
    for (const command of commands.filter((c) => c !== "npm ci")) expect(self, command).toContain(ran[command]);
  });
});

describe("npm start", () => {
  it("builds a missing dist/, serves, and on SIGTERM to npm exits 0 with the port free and no node left behind", async () => {
    expect(fs.existsSync(path.join(dir, "dist"))).toBe(false);
    const { proc, port, pid } = await npmStart(dir);
    expect(proc.logs.find((l) => l.msg === "building dist/ (tsc and the dashboard)")).toMatchObject({ reason: "dist/src/main.js is missing" });
    expect(proc.logs.find((l) => l.msg === "built dist/")).toMatchObject({ durationMs: expect.any(Number) });
    // The server is a child of npm (through sh's exec), not npm itself.
    expect(pid).not.toBe(proc.child.pid);
    await roundTrip(port);

    proc.child.kill("SIGTERM"); // to npm, as a supervisor or `docker stop` would
    expect(await exitOf(proc, 30_000)).toMatchObject({ code: 0, signal: null });
    expect(pidExists(pid)).toBe(false);
    expect(await portIsFree(port)).toBe(true);
    expect(proc.logs.map((l) => l.msg).at(-1)).toBe("database closed; exiting");
    expect(proc.garbage.filter((l) => !isNpmBanner(l))).toEqual([]);
  }, 300_000);

  it("does not build again while dist/ is up to date; a source changed after the build makes it stale", async () => {
    expect(fs.existsSync(path.join(dir, "dist/src/main.js"))).toBe(true); // built by the previous test
    const { proc, port } = await npmStart(dir);
    expect(proc.logs.some((l) => String(l.msg).startsWith("building"))).toBe(false);
    proc.child.kill("SIGINT");
    expect(await exitOf(proc, 30_000)).toMatchObject({ code: 0, signal: null });
    expect(await portIsFree(port)).toBe(true);

    // The check alone (building again is what the first test showed).
    const { staleReason } = (await import(path.join(dir, "scripts/build.mjs"))) as { staleReason: (d: string) => string | undefined };
    expect(staleReason(dir)).toBeUndefined();
    const source = path.join(dir, "src/services/retention-service.ts");
    const later = new Date(Date.now() + 60_000);
    fs.utimesSync(source, later, later);
    expect(staleReason(dir)).toBe("src/services/retention-service.ts changed after the last build");
  }, 300_000);
});

describe("a built tree installed with npm ci --omit=dev", () => {
  it("starts with npm start, migrates with npm run migrate and hashes keys with npm run hash-key, without TypeScript or tsx", async () => {
    // The built tree, without node_modules, as the Dockerfile's runtime stage holds it.
    const prod = fs.mkdtempSync(path.join(path.dirname(dir), "orchestrator-state-prod-"));
    dirs.push(prod);
    fs.cpSync(dir, prod, { recursive: true, preserveTimestamps: true, filter: (src) => path.basename(src) !== "node_modules" });
    const install = run(npm, ["ci", "--omit=dev", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"], prod, {});
    const installed = await exitOf(install, 300_000);
    expect(installed.code, install.stderr()).toBe(0);
    expect(fs.existsSync(path.join(prod, "node_modules/.bin/tsc"))).toBe(false);
    expect(fs.existsSync(path.join(prod, "node_modules/tsx"))).toBe(false);

    const migrateEnv = process.env.TEST_DATABASE_URL ? database : { DATA_DIR: path.join(prod, "data") };
    const migrate = run(npm, ["run", "--silent", "migrate"], prod, migrateEnv);
    expect((await exitOf(migrate, 120_000)).code, migrate.stderr()).toBe(0);
    expect(migrate.garbage).toEqual([]);
    const done = migrate.logs.find((l) => l.msg === "migrations applied" || l.msg === "database schema is up to date: no migration to apply");
    expect(done).toMatchObject({ durationMs: expect.any(Number) });
    if (!process.env.TEST_DATABASE_URL) {
      // A fresh DATA_DIR: every migration, by name.
      expect(done).toMatchObject({ msg: "migrations applied", migrations: expect.arrayContaining(["20261126000000_initial_schema"]) });
    }

    const key = "a-production-key-0123456789";
    const hash = run(npm, ["run", "--silent", "hash-key"], prod, {}, { input: key });
    expect((await exitOf(hash, 60_000)).code).toBe(0);
    expect(hash.garbage).toEqual([hashKey(key)]);

    // A source touched after the build: without the compiler, the start says so and runs dist/ as built.
    const later = new Date(Date.now() + 60_000);
    fs.utimesSync(path.join(prod, "src/main.ts"), later, later);
    const { proc, port } = await npmStart(prod, process.env.TEST_DATABASE_URL ? {} : { DATA_DIR: path.join(prod, "data") });
    expect(proc.logs.some((l) => String(l.msg).startsWith("building"))).toBe(false);
    expect(proc.logs[0]).toMatchObject({ level: "warn", reason: "src/main.ts changed after the last build" });
    expect(String(proc.logs[0]!.msg)).toMatch(/build tools are not installed .*running dist\/ as built/);
    await roundTrip(port);
    proc.child.kill("SIGTERM");
    expect(await exitOf(proc, 30_000)).toMatchObject({ code: 0, signal: null });
    expect(await portIsFree(port)).toBe(true);
  }, 600_000);
});
