import type { Knex } from "knex";
import * as initialSchema from "./20261126000000_initial_schema.js";

// Migrations are imported, not discovered on disk, so that they run the same
// from TypeScript sources (tests, tsx) and from the compiled dist/ (npm start).
// Append new migrations here, in order.
const migrations: Record<string, Knex.Migration> = {
  "20261126000000_initial_schema": initialSchema,
  "20261126010000_circuit_breaker_policies": await import("./20261126010000_circuit_breaker_policies.js"),
  "20261126020000_routing_audit_statistics": await import("./20261126020000_routing_audit_statistics.js"),
  "20261126030000_row_level_security": await import("./20261126030000_row_level_security.js"),
  "20261204050000_retention": await import("./20261204050000_retention.js"),
  "20261204030000_stored_bytes": await import("./20261204030000_stored_bytes.js"),
  "20261204010000_execution_leases": await import("./20261204010000_execution_leases.js"),
  "20261204080000_partition_routing_decisions": await import("./20261204080000_partition_routing_decisions.js"),
  "20261204020000_breaker_row_versions": await import("./20261204020000_breaker_row_versions.js"),
  "20261204020100_breaker_trial_permits": await import("./20261204020100_breaker_trial_permits.js"),
  "20261204020200_request_ids": await import("./20261204020200_request_ids.js"),
  "20261205100000_json_columns_as_values": await import("./20261205100000_json_columns_as_values.js"),
  "20261205200000_execution_lease_table": await import("./20261205200000_execution_lease_table.js"),
  "20261205300000_routing_decision_ids": await import("./20261205300000_routing_decision_ids.js"),
};

/** Knex migration source over the list above. */
export const migrationSource: Knex.MigrationSource<string> = {
  getMigrations: async () => Object.keys(migrations),
  getMigrationName: (name) => name,
  getMigration: async (name) => migrations[name]!,
};
