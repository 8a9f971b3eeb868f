import type { Knex } from "knex";

// HALF_OPEN trial permits as leases (CircuitBreakerService, AcquirePermission
// and RecordCallOutcome): circuit_breakers.trial_permits holds the permits of
// the current HALF_OPEN period that are neither reported nor known to be
// expired, as a JSON array of {"id": text, "expires_us": microseconds since
// the Unix epoch}, oldest first. At most half_open_trial_calls (1,000) entries;
// every change of the breaker rewrites it under the row lock, and every state
// change empties it.

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    ALTER TABLE circuit_breakers
      ADD COLUMN trial_permits jsonb NOT NULL DEFAULT '[]',
      ADD CONSTRAINT circuit_breakers_trial_permits_check
        CHECK (jsonb_typeof(trial_permits) = 'array' AND jsonb_array_length(trial_permits) <= 1000)`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`ALTER TABLE circuit_breakers DROP CONSTRAINT circuit_breakers_trial_permits_check, DROP COLUMN trial_permits`);
}
