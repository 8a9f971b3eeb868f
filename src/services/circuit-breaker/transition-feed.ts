import { Code, ConnectError } from "@connectrpc/connect";
import type { Knex } from "knex";
import { startNotificationListener, type NotificationListener } from "../../db/notification-listener.js";
import { throwIfStopped } from "../../errors/stopped.js";
import { fitWithin, rowBytes } from "../../limits/byte-budget.js";
import type { Logger } from "../../logging/logger.js";
import type { StreamSlot } from "../../streams/stream-limits.js";
import type { TransitionRecord } from "./breaker-row.js";

/** The channel the circuit_breaker_transitions trigger notifies (see migration 20261126010000). */
export const TRANSITIONS_CHANNEL = "circuit_breaker_transitions";

/** A notified transition: the stored row's columns plus its tenant. */
type Notified = TransitionRecord & { tenant_id: string };

/**
 * Fans the transitions committed by any replica out to this server's
 * WatchCircuitBreakers streams. One LISTEN connection per server, opened when
 * the first stream subscribes and kept until close(); each notification goes
 * to the subscriptions of its tenant.
 */
export class TransitionFeed {
  private readonly subscriptions = new Set<Subscription>();
  private listener: Promise<NotificationListener> | undefined;
  private closed = false;

  constructor(
    private readonly knex: Knex,
    private readonly logger: Logger,
    /** How often the LISTEN connection is probed (a dead one is replaced and its watches told). */
    private readonly probeIntervalMs?: number,
  ) {}

  /**
   * Subscribes to a tenant's transitions (only `agentKeys`, when not empty).
   * Resolves once the server is listening: every transition committed from
   * then on is delivered. The transitions waiting to be sent count in `slot`
   * (the watch's stream), at most `maxPendingBytes` of them.
   */
  async subscribe(tenantId: string, agentKeys: readonly string[], slot: StreamSlot, maxPendingBytes: number): Promise<Subscription> {
    if (this.closed) throw unavailable("the server is shutting down; call again on another replica");
    const sub = new Subscription(tenantId, new Set(agentKeys), slot, maxPendingBytes, () => this.subscriptions.delete(sub));
    this.subscriptions.add(sub);
    try {
      await this.ensureListening();
    } catch (err) {
      sub.close();
      throw err;
    }
    return sub;
  }

  /** Stops listening and ends every subscription with UNAVAILABLE. */
  async close(): Promise<void> {
    this.closed = true;
    this.failAll(unavailable("the server is shutting down; call again on another replica"));
    const listener = this.listener;
    this.listener = undefined;
    if (listener !== undefined) await listener.then((l) => l.close(), () => {});
  }

  private ensureListening(): Promise<NotificationListener> {
    if (this.listener === undefined) {
      const started = startNotificationListener(this.knex, TRANSITIONS_CHANNEL, {
        onPayload: (payload) => this.dispatch(payload),
        onLost: (err) => {
          // Transitions sent while nobody listens are missed: end the streams,
          // whose clients resynchronise, and listen afresh for the next one.
          this.logger.warn("lost the circuit breaker notification connection", { error: err });
          if (this.listener === started) this.listener = undefined;
          this.failAll(unavailable("the server lost its notification connection; watch again"));
        },
      }, { probeIntervalMs: this.probeIntervalMs });
      this.listener = started;
      // A failed start is retried by the next subscriber.
      started.catch(() => {
        if (this.listener === started) this.listener = undefined;
      });
    }
    return this.listener;
  }

  private dispatch(payload: string): void {
    let notified: Notified;
    try {
      notified = JSON.parse(payload) as Notified;
    } catch (err) {
      this.logger.error("malformed circuit breaker notification", { error: err });
      return;
    }
    for (const sub of this.subscriptions) sub.offer(notified);
  }

  private failAll(err: ConnectError): void {
    for (const sub of [...this.subscriptions]) sub.fail(err);
  }
}

/** A queued transition and what it weighs. */
interface Pending {
  transition: TransitionRecord;
  bytes: number;
}

/**
 * The transitions of one WatchCircuitBreakers stream, queued until the stream
 * sends them: at most `maxPendingBytes` (STREAM_BATCH_MAX_BYTES), counted in
 * the stream's slot, so that a watcher that stops reading holds a bounded
 * amount; one more ends the watch with RESOURCE_EXHAUSTED (watch again).
 */
export class Subscription {
  private readonly queue: Pending[] = [];
  private pendingBytes = 0;
  private failure: ConnectError | undefined;
  private wake: (() => void) | undefined;

  constructor(
    private readonly tenantId: string,
    private readonly agentKeys: ReadonlySet<string>,
    private readonly slot: StreamSlot,
    private readonly maxPendingBytes: number,
    private readonly onClose: () => void,
  ) {}

  /** Queues a notified transition if it belongs to this subscription. */
  offer(t: Notified): void {
    if (t.tenant_id !== this.tenantId || (this.agentKeys.size > 0 && !this.agentKeys.has(t.agent_key))) return;
    if (this.failure !== undefined) return;
    const { tenant_id: _tenant, ...transition } = t;
    const bytes = rowBytes(transition);
    if (this.pendingBytes + bytes > this.maxPendingBytes) {
      this.fail(new ConnectError(`the client fell more than ${this.maxPendingBytes} bytes of transitions behind; watch again`, Code.ResourceExhausted));
      return;
    }
    try {
      this.slot.hold(bytes);
    } catch (err) {
      this.fail(ConnectError.from(err));
      return;
    }
    this.queue.push({ transition, bytes });
    this.pendingBytes += bytes;
    this.wakeUp();
  }

  /** Ends the subscription with `err` once the transitions already queued are taken. */
  fail(err: ConnectError): void {
    this.failure ??= err;
    this.onClose();
    this.wakeUp();
  }

  /**
   * The next transitions: at least one, and as many queued ones as fit
   * `maxBytes`. Waits for one. Throws the subscription's failure, or, when
   * `signal` is aborted (client cancelled, server shutting down), the call's
   * error. What it returns no longer counts in the slot: the caller counts it.
   */
  async take(maxBytes: number, signal: AbortSignal): Promise<TransitionRecord[]> {
    for (;;) {
      throwIfStopped(signal);
      if (this.queue.length > 0) {
        const rows = this.queue.splice(0, fitWithin(this.queue, Infinity, maxBytes, (p) => p.bytes).rows.length);
        let bytes = 0;
        for (const p of rows) bytes += p.bytes;
        this.pendingBytes -= bytes;
        this.slot.release(bytes);
        return rows.map((p) => p.transition);
      }
      if (this.failure !== undefined) throw this.failure;
      await new Promise<void>((resolve) => {
        const done = () => {
          signal.removeEventListener("abort", done);
          this.wake = undefined;
          resolve();
        };
        this.wake = done;
        signal.addEventListener("abort", done, { once: true });
      });
    }
  }

  /** Unsubscribes; what was queued no longer counts. */
  close(): void {
    this.onClose();
    this.queue.length = 0;
    this.slot.release(this.pendingBytes);
    this.pendingBytes = 0;
  }

  private wakeUp(): void {
    this.wake?.();
  }
}

function unavailable(message: string): ConnectError {
  return new ConnectError(message, Code.Unavailable);
}
