import { Code, ConnectError } from "@connectrpc/connect";
import type { DecisionRow } from "../../db/models/routing-decision.js";
import { type DecisionColumns, DecisionIdConflict, insertEachDecision } from "../../db/queries/routing-decisions.js";
import { MAX_TIMER_MS } from "../../ranges.js";
import type { TenantScope } from "../../tenancy/tenant-scope.js";

// Group commit of RecordRoutingDecision: concurrent single-decision calls of
// one tenant share one INSERT and one commit.
//
// Alone, a call costs one INSERT and one WAL flush for one row (and, with
// statistics, a transaction: BEGIN, the statistics lock, the INSERT, COMMIT).
// Here, per lane (a tenant, with or without statistics: see `laneKey`):
//
// - Leader/follower. A call that finds its lane idle leads: its batch starts
//   at the end of the current turn of the event loop (setImmediate, no
//   timer), so that the requests read off a connection together share it.
//   Calls that arrive while that batch waits for its connection join it when
//   it has one, just before its statement (late joining, see `join` and
//   insertEachDecision's `choose`); calls that arrive after that queue up and
//   go as the next batch when it has committed, and so on until the queue is
//   empty. One batch at a time per lane, at most `maxBatch` distinct
//   decisions each: under load a batch carries whatever arrived during the
//   previous one, so the batch size follows the load by itself. (Two batches
//   at a time per lane, each half the queue, measured no faster: see
//   docs/performance.md.)
// - Each call is answered only after the commit of the batch that stored its
//   decision, with its own stored row (insertEachDecision returns rows in
//   input order). Without statistics a batch is one statement, its own
//   transaction (src/tenancy/pipelined-unit.ts): one round trip.
// - Per-call answers are exactly those of the call alone:
//   * Concurrent calls with the same decision_id and content (retries) take one
//     slot of the batch and all get the stored row, counted once in the
//     statistics, as concurrent retries alone do.
//   * A call reusing an id queued with other content waits for a later batch,
//     i.e. it runs after the first one, as if it had come a moment later:
//     it then gets ALREADY_EXISTS (or is stored, if the first one failed).
//   * An id stored earlier with other content: that call gets ALREADY_EXISTS,
//     which is what it would get alone (stored decisions never change); the
//     INSERT wrote the rest of the batch (ON CONFLICT DO NOTHING skips only
//     taken ids), so nothing is written again.
//   * Any other failure of a batch of several calls: each call is written again
//     alone, with its own deadline, and gets that answer; a batch that might
//     have committed before failing (lost reply) is safe to redo: recording is
//     idempotent (ON CONFLICT DO NOTHING, outcomes counted only for rows
//     actually inserted).
//
// Deadlines and cancellation:
// - A call whose deadline passes, or whose client cancels, while it is queued
//   is removed from the queue and answered DEADLINE_EXCEEDED (CANCELED) at
//   once; it is never written. Queueing is the group commit's version of
//   waiting for a pooled connection, which tenantTransaction ends the same way
//   (src/tenancy/row-level-security.ts). The server's shutdown also aborts the
//   call's signal: that is not a cancellation, a queued call then still runs to
//   completion like every unary call in the grace period.
// - Once the batch holds its connection, just before its first statement,
//   calls that gave up while it waited for the connection are left out the
//   same way (insertEachDecision's `choose`).
// - A batch runs under the scope of the member with the LATEST deadline among
//   those it starts with (no deadline counts as latest): its statement_timeout
//   then never cancels the write of a call whose deadline has not passed. The
//   earliest deadline would let one impatient call cancel everyone's write;
//   none would drop the bound although every member has one. For the same
//   reason a call joins late only when its deadline is not later than the
//   batch's (any call, when the batch has none); else it waits for the next.
//   The cost: a call whose deadline passes during the few milliseconds its
//   batch's statements run is still written and answered OK (its client has
//   stopped listening and saw DEADLINE_EXCEEDED: the usual ambiguity of a
//   deadline, which a retry with the same decision_id resolves to the stored
//   decision).
// All members of a lane share one Knex: one GroupCommit serves one server,
// whose tenant interceptor builds every scope from the same Knex.

/** Most distinct decisions per batch, by default. */
export const DEFAULT_MAX_BATCH = 500;

/** One call waiting for its decision to be stored. */
interface Waiter {
  readonly scope: TenantScope;
  readonly columns: DecisionColumns;
  readonly signal: AbortSignal | undefined;
  state: "queued" | "writing" | "settled";
  readonly resolve: (row: DecisionRow) => void;
  readonly reject: (err: unknown) => void;
  /** Stops watching the deadline and the signal (set while queued). */
  disarm: () => void;
}

/** One decision of a batch: a call, plus its concurrent identical retries. */
interface Slot {
  readonly columns: DecisionColumns;
  readonly waiters: Waiter[];
}

/** The queued calls of one tenant (with or without statistics) while a batch of theirs is being written. */
interface Lane {
  readonly addOutcomes: boolean;
  queue: Waiter[];
}

export class GroupCommit {
  /** Lanes with a batch in flight; a lane exists exactly while its writer runs. */
  private readonly lanes = new Map<string, Lane>();

  /**
   * @param onBatch told the number of decisions of each batch written (metrics)
   */
  constructor(
    private readonly maxBatch: number = DEFAULT_MAX_BATCH,
    private readonly onBatch?: (decisions: number) => void,
  ) {
    if (!(maxBatch >= 1)) throw new Error(`maxBatch must be at least 1, got ${maxBatch}`);
  }

  /**
   * Stores one decision for the scope's tenant, grouped with concurrent calls
   * of that tenant, and resolves with its stored row after the commit. Rejects
   * with DecisionIdConflict (indexes [0]) when its id is stored with other
   * content, or with the error the call would have got alone.
   * `signal`: the call's signal (cancellation while queued).
   */
  record(scope: TenantScope, columns: DecisionColumns, addOutcomes: boolean, signal?: AbortSignal): Promise<DecisionRow> {
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { scope, columns, signal, state: "queued", resolve, reject, disarm: () => {} };
      const early = givenUp(waiter);
      if (early !== undefined) return reject(early);
      const key = laneKey(scope.tenantId, addOutcomes);
      let lane = this.lanes.get(key);
      if (lane !== undefined) {
        // A batch of this lane is in flight: follow (join it late, or go in the next one).
        lane.queue.push(waiter);
        this.arm(lane, waiter);
        return;
      }
      // Idle: lead. The writer starts once the calls that arrived in this
      // turn of the event loop (requests read off the same connection at once)
      // have queued, so that they share the first batch; a lone call waits
      // only for the rest of this turn, not for a timer.
      lane = { addOutcomes, queue: [waiter] };
      this.lanes.set(key, lane);
      const leading = lane;
      setImmediate(() => void this.writeLane(key, leading));
    });
  }

  /** Writes the lane's queue, batch after batch, until it is empty; then the lane is idle again. */
  private async writeLane(key: string, lane: Lane): Promise<void> {
    try {
      while (lane.queue.length > 0) {
        const slots = new Map<string, Slot>();
        this.join(lane, slots, () => true);
        try {
          await this.writeBatch(lane, [...slots.values()]);
        } catch (err) {
          // writeBatch answers every call itself; this is a bug's safety net,
          // so that no call waits forever.
          for (const slot of slots.values()) for (const w of slot.waiters) settle(w, err);
        }
      }
    } finally {
      // No await between the last empty check and here: a call arriving now
      // finds no lane and leads a new one.
      this.lanes.delete(key);
    }
  }

  /**
   * Moves queued calls that `accepts` into the batch `slots`, in arrival
   * order, up to maxBatch distinct decision ids. A call with an id already in
   * the batch and the same content joins that slot (a concurrent retry); with
   * other content it stays queued for a later batch, so that it runs after
   * the first, as it would alone.
   */
  private join(lane: Lane, slots: Map<string, Slot>, accepts: (w: Waiter) => boolean): void {
    const rest: Waiter[] = [];
    for (const w of lane.queue) {
      const id = w.columns.decision_id;
      const slot = slots.get(id);
      if (!accepts(w)) {
        rest.push(w);
        continue;
      } else if (slot === undefined && slots.size < this.maxBatch) {
        slots.set(id, { columns: w.columns, waiters: [w] });
      } else if (slot !== undefined && slot.columns.content_hash === w.columns.content_hash) {
        slot.waiters.push(w);
      } else {
        rest.push(w);
        continue;
      }
      w.state = "writing";
      w.disarm();
    }
    lane.queue = rest;
  }

  /** Writes one batch (plus the calls that join it late) and answers each of its calls; never rejects. */
  private async writeBatch(lane: Lane, slots: Slot[]): Promise<void> {
    const scope = latestScope(slots);
    // What the write wrote: set by `choose`; the starting slots when it
    // failed before it got there.
    let written = slots;
    try {
      const { rows } = await insertEachDecision(
        scope,
        () => {
          // Ready to write: take the calls that queued up meanwhile, unless
          // their deadline is later than this batch's, and leave out the
          // calls that gave up.
          const batch = new Map(slots.map((s) => [s.columns.decision_id, s]));
          this.join(lane, batch, (w) => scope.deadline === undefined || (w.scope.deadline !== undefined && w.scope.deadline <= scope.deadline));
          written = leaveOutGivenUp([...batch.values()]);
          return written.map((s) => s.columns);
        },
        lane.addOutcomes,
      );
      if (written.length > 0) this.onBatch?.(written.length);
      // An id stored earlier with other content: ALREADY_EXISTS, what the
      // call gets alone (stored decisions never change); the others were stored.
      written.forEach((slot, i) => {
        const row = rows[i];
        for (const w of slot.waiters) settle(w, row === undefined ? new DecisionIdConflict([0]) : undefined, row);
      });
    } catch (err) {
      const waiters = written.flatMap((s) => s.waiters).filter((w) => w.state !== "settled");
      if (waiters.length === 1 && waiters[0]!.scope === scope) {
        // It was written alone, under its own scope: this is its own answer.
        settle(waiters[0]!, err);
        return;
      }
      // One call's failure must not fail the others: each goes again alone, in
      // its own transaction under its own scope (deadline), concurrently, as
      // without group commit.
      await Promise.all(waiters.map((w) => writeAlone(w, lane.addOutcomes)));
    }
  }

  /** Watches a queued call's deadline and signal: when it gives up, it leaves the queue, unwritten. */
  private arm(lane: Lane, w: Waiter): void {
    const giveUp = () => {
      if (w.state !== "queued") return;
      const err = givenUp(w);
      if (err === undefined) return; // the server's shutdown: still runs
      lane.queue.splice(lane.queue.indexOf(w), 1);
      settle(w, err);
    };
    const deadline = w.scope.deadline;
    const delay = deadline === undefined ? undefined : deadline - Date.now();
    // tenantTransaction treats a deadline past the longest timer as none.
    const timer = delay !== undefined && delay <= MAX_TIMER_MS ? setTimeout(giveUp, Math.max(0, delay)) : undefined;
    w.signal?.addEventListener("abort", giveUp);
    w.disarm = () => {
      clearTimeout(timer);
      w.signal?.removeEventListener("abort", giveUp);
    };
  }
}

/** Lanes: one tenant per transaction (row-level security), and one statistics mode per INSERT. */
function laneKey(tenantId: string, addOutcomes: boolean): string {
  return `${tenantId}:${addOutcomes ? "statistics" : "plain"}`;
}

/** The scope of the member with the latest deadline, one without a deadline first (see the top of this file). */
function latestScope(slots: Slot[]): TenantScope {
  let latest: TenantScope | undefined;
  for (const slot of slots) {
    for (const { scope } of slot.waiters) {
      if (scope.deadline === undefined) return scope;
      if (latest === undefined || scope.deadline > latest.deadline!) latest = scope;
    }
  }
  return latest!;
}

/** Answers the calls that gave up (deadline, cancel) and returns the slots that still have a call. */
function leaveOutGivenUp(slots: Slot[]): Slot[] {
  return slots.filter((slot) => {
    for (const w of slot.waiters) {
      const err = givenUp(w);
      if (err !== undefined) settle(w, err);
    }
    return slot.waiters.some((w) => w.state !== "settled");
  });
}

/** A call written on its own (after its batch failed): exactly what it would get without group commit. */
async function writeAlone(w: Waiter, addOutcomes: boolean): Promise<void> {
  try {
    const { decisions, rows } = await insertEachDecision(
      w.scope,
      () => {
        const err = givenUp(w);
        if (err === undefined) return [w.columns];
        settle(w, err);
        return [];
      },
      addOutcomes,
    );
    if (decisions.length > 0) settle(w, rows[0] === undefined ? new DecisionIdConflict([0]) : undefined, rows[0]);
  } catch (err) {
    settle(w, err);
  }
}

// A gRPC client cancels its call (RST_STREAM CANCEL) at its own deadline,
// which comes a little before the server's (the request's transit time): a
// cancel this close to the call's deadline is taken for the deadline.
const CLIENT_DEADLINE_SLACK_MS = 250;

/**
 * Why a call no longer wants its decision written, or undefined when it
 * still does: its deadline passed (DEADLINE_EXCEEDED), or its client
 * cancelled (CANCELED). The server's shutdown aborts the call's signal with
 * UNAVAILABLE: unary calls run to completion then, so that is not giving up.
 */
function givenUp(w: Waiter): ConnectError | undefined {
  const deadline = w.scope.deadline;
  const reason: unknown = w.signal?.aborted ? w.signal.reason : undefined;
  const shutdown = reason instanceof ConnectError && reason.code === Code.Unavailable;
  const near = deadline !== undefined && Date.now() >= deadline - (w.signal?.aborted && !shutdown ? CLIENT_DEADLINE_SLACK_MS : 0);
  if (near || (reason instanceof ConnectError && reason.code === Code.DeadlineExceeded)) {
    return new ConnectError("the call's deadline passed before its decision could be written; nothing was written", Code.DeadlineExceeded);
  }
  if (w.signal?.aborted !== true || shutdown) return undefined;
  return new ConnectError("the call was cancelled before its decision was written; nothing was written", Code.Canceled);
}

/** Answers a call once: with `err`, or else with `row`. */
function settle(w: Waiter, err: unknown, row?: DecisionRow): void {
  if (w.state === "settled") return;
  w.state = "settled";
  w.disarm();
  if (err !== undefined) w.reject(err);
  else w.resolve(row!);
}
