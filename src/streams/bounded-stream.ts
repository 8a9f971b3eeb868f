import type { HandlerContext } from "@connectrpc/connect";
import { throwIfStopped } from "../errors/stopped.js";
import { kTenantScope } from "../tenancy/tenant-scope.js";
import type { StreamLimits, StreamSlot } from "./stream-limits.js";

/**
 * What one batch may hold: at most `rows` rows (STREAM_BATCH_SIZE; a source
 * with a batch size of its own may use that instead) and, beyond its first
 * row, `bytes` bytes (STREAM_BATCH_MAX_BYTES, which every source keeps to).
 */
export interface BatchLimits {
  rows: number;
  bytes: number;
}

/** A batch a source read: its rows, and whether anything may follow them. */
export interface Batch<Row> {
  rows: Row[];
  more: boolean;
}

/** Runs `work` in one of the tenant's turns (TenantLimiter): what a batch read from the database does. */
export type InTurn = <T>(work: () => Promise<T>) => Promise<T>;

/** Where a stream's messages come from, one batch at a time. */
export interface BatchSource<Row, Message> {
  /**
   * The next batch within `limits` (a first row larger than `limits.bytes`
   * comes alone). Database reads go through `inTurn`; a read that waits for
   * something else (a notification) does not take a turn while it waits.
   */
  read(limits: BatchLimits, inTurn: InTurn): Promise<Batch<Row>>;
  /** What a row weighs against the budget, in bytes (rowBytes, or a stored size). */
  bytes(row: Row): number;
  /** The message that sends a row. */
  message(row: Row): Message;
  /**
   * Called once when the stream ends, however it ends, with the rows it read
   * and never handed to the client (empty when it sent them all): a source
   * that took something for them (leases) gives it back here. Awaited; its
   * failure is ignored. A row handed over counts as sent, even if the client
   * never received it.
   */
  close?(unsent: Row[]): void | Promise<unknown>;
}

/**
 * Serves a server stream in batches, the one loop every server stream of the
 * four services runs through, so that each holds at most a batch unsent:
 *
 * - the stream takes a place among the server's and its tenant's open streams
 *   (RESOURCE_EXHAUSTED past STREAMS_MAX or TENANT_STREAMS_MAX);
 * - each batch is at most STREAM_BATCH_SIZE rows and STREAM_BATCH_MAX_BYTES
 *   bytes (a row larger than that comes alone), counted against the
 *   server-wide STREAMS_BUFFER_MAX_BYTES (RESOURCE_EXHAUSTED past it) from
 *   when its read starts until the client has taken its message;
 * - the next batch is asked of the source only once the client has taken
 *   every message of the last one. The generator resumes after a `yield` only
 *   when Connect asks for the next message, which it does once the last one
 *   was written to the HTTP/2 stream and drained (flow control: the client
 *   read it), so a stalled client holds the server at its last batch, not at
 *   the whole table. A source may read one batch ahead (./read-ahead.ts),
 *   counted on the stream's slot: the keyset source of
 *   StreamIncompleteWorkflows does, within the same budget (./keyset-source.ts);
 * - each batch read from the database takes one of the tenant's turns
 *   (TENANT_CALLS_MAX), so a tenant's streams queue behind its own calls;
 * - a row is dropped from its batch once its message is made, and nothing is
 *   read once the call is stopped (cancelled, past its deadline, or the server
 *   shutting down: see throwIfStopped).
 *
 * `open` builds the source once the stream has its slot (a source that
 * buffers by itself, like a watch's subscription, counts that through it too).
 */
export async function* boundedStream<Row, Message>(
  ctx: HandlerContext,
  limits: StreamLimits,
  open: (slot: StreamSlot) => BatchSource<Row, Message> | Promise<BatchSource<Row, Message>>,
): AsyncGenerator<Message> {
  const tenant = ctx.values.get(kTenantScope)?.tenantId ?? "";
  const { batchMaxBytes, batchMaxRows, turns } = limits.options;
  throwIfStopped(ctx.signal);
  const slot = limits.open(tenant);
  // A database read counts its batch's budget while it runs (then the batch
  // counts what it really holds), in one of the tenant's turns. A source
  // waiting for something else (a watch for its next transition) holds
  // neither: its queue counts by itself.
  const inTurn: InTurn = async (work) => {
    slot.hold(batchMaxBytes);
    try {
      return await turns.run(tenant, ctx.signal, work);
    } finally {
      slot.release(batchMaxBytes);
    }
  };
  let source: BatchSource<Row, Message> | undefined;
  // The batch being sent: its rows not handed over yet are still in it.
  let rows: Row[] = [];
  try {
    const src = await open(slot);
    source = src;
    for (let more = true; more; ) {
      throwIfStopped(ctx.signal);
      const batch = await src.read({ rows: batchMaxRows, bytes: batchMaxBytes }, inTurn);
      rows = batch.rows;
      slot.hold(weight(rows, (row) => src.bytes(row)), true);
      more = batch.more;
      throwIfStopped(ctx.signal);
      for (let i = 0; i < rows.length; i++) {
        const next = take(src, rows, i);
        yield next.message;
        // Connect asked for the next message: the client has taken this one.
        slot.release(next.bytes);
        throwIfStopped(ctx.signal);
      }
    }
  } finally {
    slot.close();
    const ended = source;
    if (ended?.close !== undefined) {
      const unsent = rows.filter((row) => row !== undefined);
      await Promise.resolve()
        .then(() => ended.close!(unsent))
        .catch(() => {});
    }
  }
}

/** What `rows` weigh in all, each `bytes(row)` (not in the generator: see take). */
export function weight<Row>(rows: Row[], bytes: (row: Row) => number): number {
  let sum = 0;
  for (const row of rows) sum += bytes(row);
  return sum;
}

/**
 * The message of a batch's row `i`, and what the row weighs; the row is
 * dropped from the batch, which holds only the rows still to send. Not in the
 * generator: V8 keeps a suspended generator's registers, dead ones included,
 * so a row read there stays reachable while its message waits for the client
 * (a 2 MB execution held twice per stalled stream).
 */
function take<Row, Message>(src: BatchSource<Row, Message>, rows: (Row | undefined)[], i: number): { message: Message; bytes: number } {
  const row = rows[i]!;
  rows[i] = undefined;
  return { message: src.message(row), bytes: src.bytes(row) };
}
