// The server as main.ts builds it (same config, database, availability and
// createServer), in a child process of test/failures/load.test.ts, which asks
// it over IPC for what a leak would show: memory after a full GC, open HTTP/2
// sessions, calls in flight, and database connections checked out of the pool
// ("stats"); and of test/failures/hostile-tenant.test.ts, which asks for the
// event loop's delay since it last asked ("loop"). Run with --expose-gc.
import { monitorEventLoopDelay } from "node:perf_hooks";
import type { Knex } from "knex";
import { loadConfig } from "../../../src/config.js";
import { DatabaseAvailability } from "../../../src/db/availability.js";
import { createDatabase, migrate } from "../../../src/db/database.js";
import { createLogger } from "../../../src/logging/logger.js";
import { createServer } from "../../../src/server/server.js";

/** What the load test asks for ("stats") and gets back. */
export interface LoadServerStats {
  rss: number;
  heapUsed: number;
  sessions: number;
  calls: number;
  poolUsed: number;
  poolPending: number;
}

const config = loadConfig();
// Only warnings and errors: one line per RPC would dominate the measurement.
const logger = createLogger("warn");
const knex = createDatabase({ databaseUrl: config.databaseUrl, databaseDirectUrl: config.databaseDirectUrl, preparedStatements: config.databasePreparedStatements, pipelinedUnits: config.databasePipelinedUnits, dataDir: config.dataDir, poolMax: config.databasePoolMax, logger });
const database = new DatabaseAvailability({
  knex,
  logger,
  migrate: () => migrate(knex),
  retryMaxMs: config.databaseRetryMaxMs,
  probeIntervalMs: config.databaseProbeIntervalMs,
});
await database.start();
const server = createServer({ knex, logger, config, database });
const port = await server.listen(config.port, config.host);
// The line startServerProcess waits for, written directly (the logger drops info).
process.stdout.write(`${JSON.stringify({ level: "info", msg: "serving gRPC, gRPC-Web and Connect over h2c", port })}\n`);

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error("run with --expose-gc");
const pool = (knex.client as Knex.Client & { pool: { numUsed(): number; numPendingAcquires(): number } }).pool;

const loopDelay = monitorEventLoopDelay({ resolution: 10 });
loopDelay.enable();

process.on("message", (message) => {
  if (message === "loop") {
    // Milliseconds: how late the event loop ran a 10 ms timer, at the 99th percentile and at most.
    process.send!({ p99: loopDelay.percentile(99) / 1e6, max: loopDelay.max / 1e6 });
    loopDelay.reset();
    return;
  }
  if (message !== "stats") return;
  gc();
  const memory = process.memoryUsage();
  const stats: LoadServerStats = {
    rss: memory.rss,
    heapUsed: memory.heapUsed,
    ...server.stats(),
    poolUsed: pool.numUsed(),
    poolPending: pool.numPendingAcquires(),
  };
  process.send!(stats);
});
process.on("SIGTERM", () => {
  void (async () => {
    await server.shutdown();
    await database.stop();
    await knex.destroy();
    process.exit(0);
  })();
});
