import { randomUUID } from "node:crypto";
import type { Knex } from "knex";
import { defaultConfig, type Config } from "../../src/config.js";
import { createLogger, type Logger } from "../../src/logging/logger.js";
import { createServer, type AppServer } from "../../src/server/server.js";
import { createTestDatabase } from "./backend.js";

/** A real server on 127.0.0.1 and an ephemeral port, over a migrated test database. */
export interface TestServer {
  server: AppServer;
  knex: Knex;
  port: number;
  baseUrl: string;
  /** Log lines the server wrote, parsed. */
  logs: Record<string, unknown>[];
  /** Shuts the server down and closes the database. */
  close(): Promise<void>;
}

/** Starts a server for one test file. */
export async function startTestServer(overrides: Partial<Config> = {}, knex?: Knex): Promise<TestServer> {
  const db = knex ?? (await createTestDatabase());
  const logs: Record<string, unknown>[] = [];
  const logger: Logger = createLogger("debug", (line) => logs.push(JSON.parse(line) as Record<string, unknown>));
  const server = createServer({ knex: db, logger, config: { ...defaultConfig, shutdownGraceMs: 2_000, ...overrides } });
  const port = await server.listen(0, "127.0.0.1");
  return {
    server,
    knex: db,
    port,
    baseUrl: `http://127.0.0.1:${port}`,
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
