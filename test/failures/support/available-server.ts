import { ConnectError } from "@connectrpc/connect";
import type { Knex } from "knex";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../../gen/health/v1/health_pb.js";
import { defaultConfig, type Config } from "../../../src/config.js";
import { DatabaseAvailability, type DatabaseAvailabilityOptions } from "../../../src/db/availability.js";
import { migrate } from "../../../src/db/database.js";
import { createLogger } from "../../../src/logging/logger.js";
import { createServer, type AppServer } from "../../../src/server/server.js";
import { connectClient } from "../../support/clients.js";

/** A server wired like main.ts (database availability included), on 127.0.0.1 and an ephemeral port. */
export interface AvailableServer {
  server: AppServer;
  database: DatabaseAvailability;
  baseUrl: string;
  logs: Record<string, unknown>[];
  /** The overall health status ("" service). */
  health(service?: string): Promise<ServingStatus>;
  close(): Promise<void>;
}

/**
 * Builds the server over `knex` with a DatabaseAvailability (fast retries and
 * probes unless overridden; `config` overrides the server's configuration) and listens. `start` (default true) runs
 * `database.start()` before listening, as main.ts does.
 */
export async function startAvailableServer(
  knex: Knex,
  options: Partial<DatabaseAvailabilityOptions> & { start?: boolean; config?: Partial<Config> } = {},
): Promise<AvailableServer> {
  const logs: Record<string, unknown>[] = [];
  const logger = createLogger("debug", (line) => logs.push(JSON.parse(line) as Record<string, unknown>));
  const database = new DatabaseAvailability({
    knex,
    logger,
    migrate: () => migrate(knex, 5_000),
    retryInitialMs: 50,
    retryMaxMs: 400,
    probeIntervalMs: 200,
    ...options,
  });
  const server = createServer({ knex, logger, config: { ...defaultConfig, shutdownGraceMs: 2_000, ...options.config }, database });
  if (options.start ?? true) await database.start();
  const port = await server.listen(0, "127.0.0.1");
  const baseUrl = `http://127.0.0.1:${port}`;
  const healthClient = connectClient(Health, baseUrl, undefined);
  return {
    server,
    database,
    baseUrl,
    logs,
    health: async (service = "") => (await healthClient.check({ service })).status,
    async close() {
      await server.shutdown();
      await database.stop();
      await knex.destroy();
    },
  };
}

/** Polls `probe` every 50 ms until it returns `expected`; throws with the last value after `timeoutMs`. */
export async function waitFor<T>(probe: () => Promise<T>, expected: T, timeoutMs: number): Promise<number> {
  const started = Date.now();
  let last: T | string | undefined;
  for (;;) {
    try {
      last = await probe();
    } catch (err) {
      last = `error: ${ConnectError.from(err).message}`;
    }
    if (last === expected) return Date.now() - started;
    if (Date.now() - started > timeoutMs) {
      throw new Error(`expected ${String(expected)} within ${timeoutMs} ms, last saw ${String(last)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
