// `npm start` as operators and container runtimes use it, in a copy of the
// repository: it builds dist/ when missing (and only then, or when a source is
// newer), runs the built server so that SIGTERM sent to npm reaches node (npm
// exits 0, the port is free, no node is left behind), and a built tree
// installed with `npm ci --omit=dev` (no TypeScript, no tsx) starts, migrates
// and hashes keys (that test, on a build of its own: npm-ci-omit-dev.test.ts,
// so that the two workers share the file's time). The copy is the run's
// shared one (support.ts, sharedBuiltCopy) when this file claims it first, as
// in npm test, which starts it first: the build npm start makes is then the
// run's only one, which the other lifecycle files wait for; otherwise a copy
// of its own. On PGlite the server opens a migrated DATA_DIR of the
// file's own (an empty one would cost initdb and every migration at each
// start; the migrations run in the npm run migrate test); with
// TEST_DATABASE_URL it uses that PostgreSQL database.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { exitOf, killAll, portIsFree, root } from "../support/processes.js";
import { npmStart, pidExists, roundTrip } from "./support.js";
import { claimUnbuiltSharedCopy, copyRepository } from "../support/built-server.js";
import { createPgliteDataDir, postgresEnv } from "../support/backend.js";

let database: NodeJS.ProcessEnv;
// What npm itself prints around a script (its banner), not the server's lines.
const isNpmBanner = (line: string) => line === "" || line.startsWith("> ");

let dir: string;
/** Tells the files waiting for the shared copy that no build came of it (when this file claimed it). */
let sharedBuildFailed: ((reason: string) => void) | undefined;
const dirs: string[] = [];
beforeAll(async () => {
  const shared = claimUnbuiltSharedCopy();
  if (shared !== undefined) {
    dir = shared.dir;
    sharedBuildFailed = shared.failed;
  } else {
    dir = copyRepository("orchestrator-state-npm-start-", { nodeModules: true });
    dirs.push(dir);
  }
  if (process.env.TEST_DATABASE_URL) database = postgresEnv();
  else {
    database = { DATA_DIR: await createPgliteDataDir("orchestrator-state-npm-start-data-") };
    dirs.push(database.DATA_DIR!);
  }
});
afterEach(killAll);
afterAll(() => {
  sharedBuildFailed?.("npm start in test/lifecycle/npm-start.test.ts did not build the run's shared copy (see that file's failure)");
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

describe("README \"Start it\"", () => {
  // "This file": this one, npm-ci-omit-dev.test.ts (once one file) and their npmStart (support.ts).
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
    const self = ["npm-start.test.ts", "npm-ci-omit-dev.test.ts", "support.ts"].map((file) => fs.readFileSync(path.join(root, "test/lifecycle", file), "utf8")).join("\n");
    expect(new Set(commands)).toEqual(new Set(Object.keys(ran)));
    for (const command of commands.filter((c) => c !== "npm ci")) expect(self, command).toContain(ran[command]);
  });
});

describe("npm start", () => {
  it("builds a missing dist/, serves, and on SIGTERM to npm exits 0 with the port free and no node left behind", async () => {
    expect(fs.existsSync(path.join(dir, "dist"))).toBe(false);
    const { proc, port, pid } = await npmStart(dir, database).catch((err: unknown) => {
      sharedBuildFailed?.(`npm start in test/lifecycle/npm-start.test.ts: ${String(err)}`);
      throw err;
    });
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
    const { proc, port } = await npmStart(dir, database);
    expect(proc.logs.some((l) => String(l.msg).startsWith("building"))).toBe(false);
    proc.child.kill("SIGINT");
    expect(await exitOf(proc, 30_000)).toMatchObject({ code: 0, signal: null });
    expect(await portIsFree(port)).toBe(true);

    // The check alone (building again is what the first test showed), on a
    // copy of the built tree's sources and stamp, with their times: the tree
    // may be the run's shared build, which other files read meanwhile.
    const { staleReason, SOURCES, STAMP } = (await import(path.join(dir, "scripts/build.mjs"))) as {
      staleReason: (d: string) => string | undefined;
      SOURCES: string[];
      STAMP: string;
    };
    expect(staleReason(dir)).toBeUndefined();
    const checked = fs.mkdtempSync(path.join(os.tmpdir(), "orchestrator-state-stale-"));
    dirs.push(checked);
    for (const entry of [...SOURCES, STAMP, "dist/src/main.js"]) {
      fs.cpSync(path.join(dir, entry), path.join(checked, entry), { recursive: true, preserveTimestamps: true });
    }
    expect(staleReason(checked)).toBeUndefined();
    const source = path.join(checked, "src/services/retention-service.ts");
    const later = new Date(Date.now() + 60_000);
    fs.utimesSync(source, later, later);
    expect(staleReason(checked)).toBe("src/services/retention-service.ts changed after the last build");
  }, 300_000);
});
