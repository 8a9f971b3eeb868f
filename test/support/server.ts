import { randomUUID } from "node:crypto";
import type { Knex } from "knex";
import { defaultConfig, type Config } from "../../src/config.js";
import { createLogger, type Logger } from "../../src/logging/logger.js";
import { createServer, type AppServer, type ServerDeps } from "../../src/server/server.js";
import { createTestDatabase } from "./backend.js";

/** A real server on 127.0.0.1 and an ephemeral port, over a migrated test database. */
export interface TestServer {
  server: AppServer;
  knex: Knex;
  port: number;
  baseUrl: string;
  /** The dashboard's origin (http://127.0.0.1:<port>), when it was asked for. */
  dashboardUrl?: string;
  /** Log lines the server wrote, parsed. */
  logs: Record<string, unknown>[];
  /** Shuts the server down and closes the database. */
  close(): Promise<void>;
}

/**
 * Starts a server for one test file; with `dashboardAssetsDir`, also its
 * dashboard port, serving the bundle built there; `extra` adds what a test
 * needs (metrics, tracing). No background retention unless a test asks: a
 * pass would delete the rows of retention tests that share the database (they
 * run passes themselves).
 */
export async function startTestServer(
  overrides: Partial<Config> = {},
  knex?: Knex,
  dashboardAssetsDir?: string,
  extra: Pick<ServerDeps, "metrics" | "tracing"> = {},
): Promise<TestServer> {
  const db = knex ?? (await createTestDatabase());
  const logs: Record<string, unknown>[] = [];
  const logger: Logger = createLogger("debug", (line) => logs.push(JSON.parse(line) as Record<string, unknown>));
  const config = { ...defaultConfig, shutdownGraceMs: 2_000, retentionIntervalMs: 0, ...overrides };
  const server = createServer({ knex: db, logger, config, dashboardAssetsDir, ...extra });
  const port = await server.listen(0, "127.0.0.1");
  const scheme = config.tlsCertFile === undefined ? "http" : "https";
  const dashboardPort = dashboardAssetsDir === undefined ? undefined : await server.listenDashboard(0, "127.0.0.1");
  return {
    server,
    knex: db,
    port,
    baseUrl: `${scheme}://127.0.0.1:${port}`,
    dashboardUrl: dashboardPort === undefined ? undefined : `${scheme}://127.0.0.1:${dashboardPort}`,
    logs,
    async close() {
      await server.shutdown();
      if (knex === undefined) await db.destroy();
    },
  };
}

/** A fresh tenant id: tests isolate themselves by tenant. */
export function newTenant(): string {
  return randomUUID();
}
