// A built tree installed with `npm ci --omit=dev` (no TypeScript, no tsx), as
// the Dockerfile's runtime stage holds it, starts with npm start, migrates with
// npm run migrate (on PGlite a new DATA_DIR: every migration) and hashes keys
// with npm run hash-key. The tree is the run's shared build (support.ts); the
// rest of npm start: npm-start.test.ts.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { hashKey } from "../../src/auth/key-store.js";
import { postgresEnv } from "../support/backend.js";
import { exitOf, killAll, portIsFree, run } from "../support/processes.js";
import { npmStart, roundTrip } from "./support.js";
import { sharedBuiltCopy } from "../support/built-server.js";

const npm = process.platform === "win32" ? "npm.cmd" : "npm";

let prod: string | undefined;
afterEach(killAll);
afterAll(() => {
  if (prod !== undefined) fs.rmSync(prod, { recursive: true, force: true });
});

describe("a built tree installed with npm ci --omit=dev", () => {
  it("starts with npm start, migrates with npm run migrate and hashes keys with npm run hash-key, without TypeScript or tsx", async () => {
    // The built tree, without node_modules, as the Dockerfile's runtime stage holds it.
    const built = await sharedBuiltCopy();
    prod = fs.mkdtempSync(path.join(os.tmpdir(), "orchestrator-state-prod-"));
    fs.cpSync(built, prod, { recursive: true, preserveTimestamps: true, filter: (src) => path.basename(src) !== "node_modules" });
    const install = run(npm, ["ci", "--omit=dev", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"], prod, {});
    const installed = await exitOf(install, 300_000);
    expect(installed.code, install.stderr()).toBe(0);
    expect(fs.existsSync(path.join(prod, "node_modules/.bin/tsc"))).toBe(false);
    expect(fs.existsSync(path.join(prod, "node_modules/tsx"))).toBe(false);

    const migrateEnv = process.env.TEST_DATABASE_URL ? postgresEnv() : { DATA_DIR: path.join(prod, "data") };
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
    const { proc, port } = await npmStart(prod, migrateEnv);
    expect(proc.logs.some((l) => String(l.msg).startsWith("building"))).toBe(false);
    expect(proc.logs[0]).toMatchObject({ level: "warn", reason: "src/main.ts changed after the last build" });
    expect(String(proc.logs[0]!.msg)).toMatch(/build tools are not installed .*running dist\/ as built/);
    await roundTrip(port);
    proc.child.kill("SIGTERM");
    expect(await exitOf(proc, 30_000)).toMatchObject({ code: 0, signal: null });
    expect(await portIsFree(port)).toBe(true);
  }, 600_000);
});
