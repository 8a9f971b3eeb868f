import type { PGlite } from "@electric-sql/pglite";
import type { Knex } from "knex";
import pg from "pg";
import { sessionConnectionConfig } from "./database.js";

/** Receives the payloads of one NOTIFY channel, on either backend. */
export interface NotificationListener {
  /** Stops receiving and releases the connection. Safe to call more than once. */
  close(): Promise<void>;
}

/** What a listener reports to its owner. */
export interface NotificationHandlers {
  /** One notification's payload, in commit order of the notifying transactions. */
  onPayload(payload: string): void;
  /**
   * The listening connection was lost: notifications sent from now on are
   * missed until a new listener is started. Not called after close().
   */
  onLost(err: Error): void;
}

/** How a listener watches its connection. */
export interface NotificationListenerOptions {
  /**
   * PostgreSQL: time between two `SELECT 1` probes of the listening
   * connection (undefined: none). A probe that fails, or gets no answer within
   * the connection's query_timeout (src/connection/answer-timeout.ts), means the
   * connection is lost (onLost): a partition leaves it open and silent, and
   * nothing else would notice that notifications stopped coming.
   */
  probeIntervalMs?: number | undefined;
}

/**
 * Starts LISTENing on `channel` of the database behind `knex`, and resolves
 * once notifications committed from now on will be received.
 *
 * PostgreSQL: a dedicated `pg.Client`, outside the pool, because a LISTEN
 * belongs to one session and pooled connections are shared and recycled. It
 * has the pool's connection settings (keepalive, query_timeout) and is probed
 * every `probeIntervalMs`.
 *
 * PGlite: one session serves every query, so the LISTEN is run through Knex
 * (never inside another call's transaction, whose rollback would undo it) and
 * the payloads are taken from PGlite's notification callback. The LISTEN stays
 * on the shared session after close() (another server on the same database may
 * still rely on it); a notification then only reaches no callback.
 */
export async function startNotificationListener(
  knex: Knex,
  channel: string,
  handlers: NotificationHandlers,
  options: NotificationListenerOptions = {},
): Promise<NotificationListener> {
  const client = knex.client as { pglite?: PGlite; config: Knex.Config };
  if (client.pglite !== undefined) {
    const pglite = client.pglite;
    const unsubscribe = pglite.onNotification((ch, payload) => {
      if (ch === channel) handlers.onPayload(payload);
    });
    try {
      await knex.raw(`LISTEN ${pg.escapeIdentifier(channel)}`);
    } catch (err) {
      unsubscribe();
      throw err;
    }
    return { close: async () => unsubscribe() };
  }

  // DATABASE_DIRECT_URL when set: a LISTEN needs a session, which a transaction-mode pooler does not keep.
  const connection = new pg.Client(sessionConnectionConfig(knex));
  let closing = false;
  let probe: NodeJS.Timeout | undefined;
  const lost = (err: Error) => {
    if (closing) return;
    closing = true;
    clearInterval(probe);
    handlers.onLost(err);
    // With a probe still waiting for its answer, end() destroys the socket.
    connection.end().catch(() => {});
  };
  connection.on("notification", (msg) => {
    if (msg.channel === channel && msg.payload !== undefined) handlers.onPayload(msg.payload);
  });
  connection.on("error", lost);
  connection.on("end", () => lost(new Error("the notification connection ended")));
  try {
    await connection.connect();
    await connection.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
  } catch (err) {
    closing = true;
    await connection.end().catch(() => {});
    throw err;
  }
  if (options.probeIntervalMs !== undefined) {
    let probing = false;
    probe = setInterval(() => {
      if (probing || closing) return;
      probing = true;
      connection.query("SELECT 1").then(
        () => (probing = false),
        (err: unknown) => lost(err instanceof Error ? err : new Error(String(err))),
      );
    }, options.probeIntervalMs);
    // The probe alone does not keep the process alive.
    probe.unref();
  }
  return {
    async close() {
      if (closing) return;
      closing = true;
      clearInterval(probe);
      await connection.end().catch(() => {});
    },
  };
}
