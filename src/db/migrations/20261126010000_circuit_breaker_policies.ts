import type { Knex } from "knex";

// What CircuitBreakerService's shared state machine needs beyond the initial
// schema:
//
// - circuit_breakers gains the state machine's bookkeeping: failures in a row,
//   the sliding window of recent outcomes ('0' success, '1' failure, oldest
//   first; text works the same on PostgreSQL and PGlite), the trial calls
//   granted in HALF_OPEN, and the agent's policy overrides as protobuf JSON
//   (`{}` = every server default).
// - circuit_breaker_transitions: the append-only history of state changes. Its
//   key leads with (tenant_id, agent_key) and ends with an identity, so that one
//   agent's history is listed newest first from the primary key. Transitions of
//   one agent are written under that breaker's row lock, so their ids grow in
//   commit order.
// - A trigger notifies channel `circuit_breaker_transitions` with each new
//   transition (as JSON) so that every server replica can stream it to
//   watchers. NOTIFY inside the writing transaction is delivered on commit, and
//   never when it rolls back. The payload stays far below NOTIFY's 8,000-byte
//   limit: agent keys are at most 200 characters.

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    ALTER TABLE circuit_breakers
      ADD COLUMN consecutive_failures bigint NOT NULL DEFAULT 0,
      ADD COLUMN recent_outcomes text NOT NULL DEFAULT '',
      ADD COLUMN trial_calls_granted integer NOT NULL DEFAULT 0,
      ADD COLUMN policy jsonb NOT NULL DEFAULT '{}',
      ADD CONSTRAINT circuit_breakers_counters_check
        CHECK (failure_count >= 0 AND success_count >= 0 AND consecutive_failures >= 0 AND trial_calls_granted >= 0),
      ADD CONSTRAINT circuit_breakers_recent_outcomes_check
        CHECK (recent_outcomes ~ '^[01]*$' AND length(recent_outcomes) <= 1000)`);

  await knex.raw(`
    CREATE TABLE circuit_breaker_transitions (
      tenant_id uuid NOT NULL,
      agent_key text NOT NULL,
      transition_id bigint GENERATED ALWAYS AS IDENTITY,
      from_state text NOT NULL,
      to_state text NOT NULL,
      reason text NOT NULL,
      failure_count bigint NOT NULL DEFAULT 0,
      success_count bigint NOT NULL DEFAULT 0,
      consecutive_failures bigint NOT NULL DEFAULT 0,
      window_calls integer NOT NULL DEFAULT 0,
      window_failures integer NOT NULL DEFAULT 0,
      transition_time timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (tenant_id, agent_key, transition_id),
      CONSTRAINT circuit_breaker_transitions_states_check CHECK (
        from_state IN ('CLOSED', 'OPEN', 'HALF_OPEN', 'FORCED_OPEN', 'DISABLED') AND
        to_state IN ('CLOSED', 'OPEN', 'HALF_OPEN', 'FORCED_OPEN', 'DISABLED') AND
        from_state <> to_state)
    )`);

  await knex.raw(`
    CREATE FUNCTION circuit_breaker_transitions_notify() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      PERFORM pg_notify('circuit_breaker_transitions', json_build_object(
        'tenant_id', NEW.tenant_id,
        'agent_key', NEW.agent_key,
        'transition_id', NEW.transition_id::text,
        'from_state', NEW.from_state,
        'to_state', NEW.to_state,
        'reason', NEW.reason,
        'failure_count', NEW.failure_count::text,
        'success_count', NEW.success_count::text,
        'consecutive_failures', NEW.consecutive_failures::text,
        'window_calls', NEW.window_calls,
        'window_failures', NEW.window_failures,
        'transition_time', NEW.transition_time::text)::text);
      RETURN NULL;
    END
    $$`);
  await knex.raw(`
    CREATE TRIGGER circuit_breaker_transitions_notify_trigger
      AFTER INSERT ON circuit_breaker_transitions
      FOR EACH ROW EXECUTE FUNCTION circuit_breaker_transitions_notify()`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP TABLE IF EXISTS circuit_breaker_transitions`);
  await knex.raw(`DROP FUNCTION IF EXISTS circuit_breaker_transitions_notify()`);
  await knex.raw(`
    ALTER TABLE circuit_breakers
      DROP CONSTRAINT circuit_breakers_recent_outcomes_check,
      DROP CONSTRAINT circuit_breakers_counters_check,
      DROP COLUMN policy,
      DROP COLUMN trial_calls_granted,
      DROP COLUMN recent_outcomes,
      DROP COLUMN consecutive_failures`);
}
