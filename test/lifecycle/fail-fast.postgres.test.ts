// PostgreSQL only (TEST_DATABASE_URL): the built server tells a database that
// refuses it (no such database, no such role) from one that is merely
// unreachable. The first stops the process within 5 s with one JSON line
// naming DATABASE_URL (exit code 2); the second is retried, one line per
// attempt and no stack trace, while the server listens with health
// NOT_SERVING, until the database answers (through a TCP proxy the test opens
// on the port that was closed).
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/health/v1/health_pb.js";
import { directPostgresUrl, postgresUrl } from "../support/backend.js";
import { databaseTarget, proxiedUrl, TcpProxy } from "../failures/support/tcp-proxy.js";
import { exitOf, freePort, killAll, SERVING } from "../support/processes.js";
import { serverProcess, sharedBuiltCopy } from "../support/built-server.js";

const MIGRATE_FAILED = "could not migrate the database; retrying (health is NOT_SERVING)";

let dir: string;
beforeAll(async () => {
  dir = await sharedBuiltCopy();
}, 300_000);
afterEach(killAll);

/**
 * PostgreSQL itself with another database or user: its own refusals are under
 * test (behind the CI's PgBouncer, auth_type any, the pooler would answer).
 */
function variant(change: (url: URL) => void): string {
  const url = new URL(directPostgresUrl());
  change(url);
  return url.toString();
}

describe("a database that refuses the server stops it within 5 s with one JSON line naming DATABASE_URL", () => {
  it.each([
    ["a database that does not exist", variant((u) => (u.pathname = "/no_such_database_of_orchestrator_state")), /DATABASE_URL: the database does not exist \(3D000/],
    ["a role that does not exist", variant((u) => (u.username = "no_such_role_of_orchestrator_state")), /DATABASE_URL: the server refused the role \(28000/],
  ])("%s", async (_name, databaseUrl, msg) => {
    const proc = serverProcess(dir, { PORT: String(await freePort()), DATABASE_URL: databaseUrl });
    const { code, signal, ms } = await exitOf(proc, 30_000);
    expect({ code, signal }).toEqual({ code: 2, signal: null });
    expect(ms).toBeLessThan(5_000);
    expect(proc.garbage).toEqual([]);
    expect(proc.stderr()).toBe("");
    const errors = proc.logs.filter((l) => l.level === "error");
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ variable: "DATABASE_URL", exitCode: 2 });
    expect(String(errors[0]!.msg)).toMatch(msg);
    expect(JSON.stringify(proc.logs)).not.toMatch(/\\n\s+at |"stack"/);
  });
});

describe("an unreachable database", () => {
  it("is retried with a line per attempt and no stack trace; health is NOT_SERVING until it answers, then SERVING", async () => {
    const proxy = new TcpProxy(databaseTarget(postgresUrl()));
    const closedPort = await proxy.reservePort(); // nothing listens there yet
    const port = await freePort();
    const proc = serverProcess(dir, { PORT: String(port), DATABASE_URL: proxiedUrl(postgresUrl(), closedPort), DATABASE_RETRY_MAX_MS: "500" });
    try {
      // The server listens while the database is away, and says so.
      await proc.line(SERVING, 60_000);
      const health = createClient(Health, createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }));
      expect((await health.check({ service: "" })).status).toBe(ServingStatus.NOT_SERVING);
      await proc.line(MIGRATE_FAILED);
      await waitUntil(() => proc.logs.filter((l) => l.msg === MIGRATE_FAILED).length >= 3, 30_000);
      const attempts = proc.logs.filter((l) => l.msg === MIGRATE_FAILED);
      expect(attempts.slice(0, 3).map((l) => l.attempt)).toEqual([1, 2, 3]);
      for (const line of attempts) {
        expect(line).toMatchObject({ level: "error", unavailable: true, error: { code: "ECONNREFUSED" } });
        expect(line.retryInMs).toEqual(expect.any(Number));
      }
      expect((await health.check({ service: "" })).status).toBe(ServingStatus.NOT_SERVING);
      expect(proc.garbage).toEqual([]);
      expect(JSON.stringify(proc.logs)).not.toMatch(/\\n\s+at |"stack"/);
      expect(proc.logs.some((l) => l.exitCode !== undefined)).toBe(false);

      // The database answers: migrations run, health turns SERVING, by itself.
      await proxy.restore();
      await proc.line(/^(migrations applied|database schema is up to date)/, 30_000);
      await waitUntil(async () => (await health.check({ service: "" })).status === ServingStatus.SERVING, 15_000);
      proc.child.kill("SIGTERM");
      expect(await exitOf(proc, 20_000)).toMatchObject({ code: 0, signal: null });
    } finally {
      await proxy.cut();
    }
  }, 120_000);
});

async function waitUntil(condition: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
