// Knex configuration for the knex CLI. The server and `npm run migrate` build
// the same configuration from the same environment variables (src/config.ts).
import { loadConfig } from "./src/config.js";
import { databaseConfig } from "./src/db/database.js";

const config = loadConfig();

export default databaseConfig({
  databaseUrl: config.databaseUrl,
  databaseDirectUrl: config.databaseDirectUrl,
  preparedStatements: config.databasePreparedStatements,
  dataDir: config.dataDir,
  poolMax: config.databasePoolMax,
});
