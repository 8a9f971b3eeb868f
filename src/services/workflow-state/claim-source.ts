import type { ExecutionRow } from "../../db/models/workflow-execution.js";
import type { ClaimInput } from "../../db/queries/execution-leases.js";
import type { BoundedRows } from "../../limits/byte-budget.js";
import { type Batch, type BatchLimits, type InTurn, weight } from "../../streams/bounded-stream.js";
import { type AheadStream, readAhead } from "../../streams/read-ahead.js";

/** Rows one claim batch takes at most once it has grown (the byte budget, STREAM_BATCH_MAX_BYTES, still applies). */
export const CLAIM_BATCH_MAX_ROWS = 1_000;

/** What a claim stream asks for. */
export interface ClaimRequest {
  owner: string;
  leaseMs: number;
  workflowName: string;
  /** At most this many executions in all; 0: no limit. */
  maxCount: number;
}

/** Claims one batch (execution-leases.ts claimBatch, bound to the call's tenant). */
export type ClaimBatch = (input: ClaimInput, limits: BatchLimits) => Promise<BoundedRows<ExecutionRow>>;

/** What claimBatches needs of the stream besides the claim: its slot, to count a batch claimed ahead (see readAhead). */
export interface ClaimStream extends AheadStream<ExecutionRow> {
  now?: () => number;
}

/** The batches of one ClaimIncompleteWorkflows call (see claimBatches). */
export interface ClaimBatches {
  read(limits: BatchLimits, inTurn: InTurn): Promise<Batch<ExecutionRow>>;
  /**
   * Ends the claims: waits for a batch being claimed ahead and returns the
   * rows claimed and never handed to the stream (their leases are the
   * caller's to release). Nothing is claimed after it.
   */
  close(): Promise<ExecutionRow[]>;
}

/**
 * The batches of one ClaimIncompleteWorkflows call: each claims the next
 * claimable executions after the last one claimed, until none is left or
 * `maxCount` were claimed.
 *
 * How many rows a batch claims: the first STREAM_BATCH_SIZE (`limits.rows`);
 * then twice the last, up to CLAIM_BATCH_MAX_ROWS, as long as the client
 * takes each batch quickly: within a tenth of the lease duration from the
 * batch's claim to the next read (which the stream makes only once the client
 * has taken every message of the last batch). A client slower than that goes
 * back to STREAM_BATCH_SIZE. Why: each batch is one transaction, and its
 * commit waits for PostgreSQL to flush its WAL to disk (1-5 ms here), so
 * small batches spend most of a fast claimer's time waiting for fsync (B6 of
 * docs/performance.md); but a batch's leases run from its claim, so the rows
 * a slow client has not taken yet must stay few, or their leases would age
 * (and expire) in the server's buffer. The byte budget of a batch is the
 * stream's (half of it while a batch is claimed ahead, see below), whatever
 * its row count, and a batch asks for no more rows than the budget holds at
 * the average stored size of the last batch's rows: the claim locks the rows
 * it asks for before it applies the budget, so rows past it were locked (a
 * WAL record each) and unlocked unclaimed, then locked again by the next
 * batch (at 1 MiB and rows of about 1.7 KB, 370 of every 1,000).
 *
 * Claiming ahead (src/streams/read-ahead.ts): while the client is taking a
 * batch quickly, the next one is claimed meanwhile, so that the database's
 * work and the sending overlap, each of the two batches within half the byte
 * budget. Only then: a batch claimed ahead for a slow client would age its
 * leases in the server's buffer. A claim ahead that fails is not an answer:
 * the next read claims again, and fails the stream if that fails too (a claim
 * that failed committed nothing, or leases that expire).
 */
export function claimBatches(request: ClaimRequest, claim: ClaimBatch, stream: ClaimStream): ClaimBatches {
  const now = stream.now ?? Date.now;
  let after: [string, string] | undefined;
  let claimed = 0;
  let rows = 0;
  /** The average stored size of the rows of the last batch claimed (0: none claimed yet). */
  let rowBytes = 0;
  let claimedAt = 0;

  const claimNext = async (limits: BatchLimits, inTurn: InTurn): Promise<Batch<ExecutionRow>> => {
    const fit = rowBytes === 0 ? rows : Math.max(1, Math.min(rows, Math.floor(limits.bytes / rowBytes)));
    const wanted = request.maxCount === 0 ? fit : Math.min(fit, request.maxCount - claimed);
    const input: ClaimInput = { owner: request.owner, leaseMs: request.leaseMs, workflowName: request.workflowName, after };
    const batch = await inTurn(() => claim(input, { rows: wanted, bytes: limits.bytes }));
    claimedAt = now();
    const last = batch.rows[batch.rows.length - 1];
    if (last !== undefined) after = [last.started_at, last.execution_id];
    claimed += batch.rows.length;
    if (batch.rows.length > 0) rowBytes = weight(batch.rows, stream.bytes) / batch.rows.length;
    return { rows: batch.rows, more: batch.more && (request.maxCount === 0 || claimed < request.maxCount) };
  };
  const reader = readAhead(claimNext, stream);

  return {
    read(limits, inTurn) {
      const quick = rows > 0 && now() - claimedAt < request.leaseMs / 10;
      rows = quick ? Math.max(limits.rows, Math.min(CLAIM_BATCH_MAX_ROWS, rows * 2)) : limits.rows;
      if (!quick) return reader.read(limits, inTurn, () => false);
      // Two batches are held while claiming ahead: each gets half the byte
      // budget, so that together they weigh no more than the budget, as a
      // keyset stream's do (src/streams/keyset-source.ts); a batch heavier
      // than half (one row larger than that) has nothing claimed after it.
      const half = { rows: limits.rows, bytes: Math.max(1, Math.floor(limits.bytes / 2)) };
      return reader.read(half, inTurn, (batch) => weight(batch.rows, stream.bytes) <= half.bytes);
    },
    close: () => reader.close(),
  };
}
