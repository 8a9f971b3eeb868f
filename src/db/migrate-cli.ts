// `npm run migrate`: applies pending migrations to the configured database
// (DATABASE_URL, or the embedded PGlite in DATA_DIR) and exits.
import { loadConfig } from "../config.js";
import { createDatabase, migrate } from "./database.js";

const config = loadConfig();
const knex = createDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, poolMax: 1 });
try {
  await migrate(knex);
  const [, pending] = (await knex.migrate.list()) as [unknown[], unknown[]];
  console.log(JSON.stringify({ level: "info", msg: "migrations applied", pending: pending.length }));
} finally {
  await knex.destroy();
}
