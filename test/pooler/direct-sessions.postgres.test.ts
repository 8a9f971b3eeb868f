import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Knex } from "knex";
import { createDatabase, migrate } from "../../src/db/database.js";
import { startNotificationListener } from "../../src/db/notification-listener.js";
import { silentLogger } from "../../src/logging/logger.js";
import { RETENTION_LOCK_KEY, RetentionWorker } from "../../src/retention/worker.js";
import { defaultConfig } from "../../src/config.js";
import pg from "pg";
import { createScratchDatabase, createTestDatabase, postgresOptions, postgresUrl } from "../support/backend.js";

// What needs a session (migrations, LISTEN, the retention pass's advisory
// lock) goes to DATABASE_DIRECT_URL when it is set, never through
// DATABASE_URL, which may be a transaction-mode pooler. Shown with a
// DATABASE_URL nobody answers: only the direct URL can serve them.

const UNREACHABLE = "postgres://postgres@127.0.0.1:1/nobody";
const direct = process.env.TEST_DATABASE_DIRECT_URL || postgresUrl();

let pooled: Knex;
let other: Knex;
beforeAll(async () => {
  pooled = createDatabase({ databaseUrl: UNREACHABLE, databaseDirectUrl: direct, poolMax: 1, logger: silentLogger });
  other = await createTestDatabase();
});
afterAll(async () => {
  await pooled.destroy();
  await other.destroy();
});

describe("sessions over DATABASE_DIRECT_URL", () => {
  it("migrations run there", async () => {
    await expect(migrate(pooled)).resolves.toBeInstanceOf(Array);
    await expect(pooled.raw("SELECT 1")).rejects.toThrow(); // the pool itself reaches nobody
  });

  it("LISTEN runs there and hears what others commit", async () => {
    const channel = `direct_${Date.now()}`;
    const payloads: string[] = [];
    const listener = await startNotificationListener(pooled, channel, { onPayload: (p) => payloads.push(p), onLost: () => {} });
    try {
      await other.raw("SELECT pg_notify(?, 'hello')", [channel]);
      const deadline = Date.now() + 10_000;
      while (payloads.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(payloads).toEqual(["hello"]);
    } finally {
      await listener.close();
    }
  });

  it("the retention pass takes its lock there", async () => {
    // A database of its own: advisory locks are per database, and holding
    // retention's lock in the shared one would make other files' passes skip.
    const scratch = await createScratchDatabase("direct_lock");
    const directScratch = (process.env.TEST_DATABASE_DIRECT_URL ? postgresOptions(scratch.url!).databaseDirectUrl : scratch.url)!;
    const holder = new pg.Client({ connectionString: directScratch });
    await holder.connect();
    const knex = createDatabase({ databaseUrl: UNREACHABLE, databaseDirectUrl: directScratch, poolMax: 1, logger: silentLogger });
    try {
      await holder.query("SELECT pg_advisory_lock($1::bigint)", [RETENTION_LOCK_KEY]);
      // It reached the lock over the direct URL, found it held, and skipped the round.
      const worker = new RetentionWorker({ knex, logger: silentLogger, defaults: defaultConfig.retentionDefaults, intervalMs: 0, batchSize: 10 });
      expect(await worker.runOnce()).toEqual({ outcome: "skipped" });
    } finally {
      await holder.end();
      await knex.destroy();
      await scratch.drop();
    }
  });
});
