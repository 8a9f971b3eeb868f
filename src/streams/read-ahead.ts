import { type Batch, type BatchLimits, type InTurn, weight } from "./bounded-stream.js";
import type { StreamSlot } from "./stream-limits.js";

/** What reading ahead needs of the stream: its slot, to count a batch read ahead, and what a row weighs. */
export interface AheadStream<Row> {
  slot: Pick<StreamSlot, "hold" | "release">;
  bytes(row: Row): number;
}

/** A source's batches, each read while the stream sends the one before (see readAhead). */
export interface AheadReader<Row> {
  /**
   * The next batch: the one read ahead if there is one, else read now (within
   * `limits`). When `ahead` says so of it, the batch after it is then read,
   * within the same limits, while the stream sends this one.
   */
  read(limits: BatchLimits, inTurn: InTurn, ahead: (batch: Batch<Row>) => boolean): Promise<Batch<Row>>;
  /**
   * Ends the reads: waits for a batch being read ahead and returns its rows,
   * which were never handed to the stream. Nothing is read after it.
   */
  close(): Promise<Row[]>;
}

/**
 * Reads a source's batches one ahead of the stream, so that the database's
 * work and the sending overlap instead of taking turns: boundedStream asks
 * for the next batch only once the client has taken every message of the
 * last, and a stream that waits for its next batch only then spends each
 * batch's round trip and query idle (B5 and B6 of docs/performance.md). So a
 * stream reading ahead holds at most two batches: the one being sent and the
 * one read ahead, which counts against the server's stream buffer
 * (STREAMS_BUFFER_MAX_BYTES) from when it arrives until the stream takes it,
 * and is read in a turn of the tenant like any read. The caller says when a
 * second batch is worth holding (`ahead`), and sizes both.
 *
 * A read ahead that fails is not an answer: the next read tries again, and
 * fails the stream if that fails too.
 */
export function readAhead<Row>(next: (limits: BatchLimits, inTurn: InTurn) => Promise<Batch<Row>>, stream: AheadStream<Row>): AheadReader<Row> {
  let closed = false;
  /** The batch read ahead, while it is read and until the stream takes it (held: the bytes its rows count). */
  let pending: { batch: Promise<Batch<Row> | undefined>; held: number } | undefined;

  const take = async (): Promise<Batch<Row> | undefined> => {
    const taken = pending!;
    pending = undefined;
    const batch = await taken.batch;
    stream.slot.release(taken.held);
    return batch;
  };

  return {
    async read(limits, inTurn, ahead) {
      const batch = (pending !== undefined ? await take() : undefined) ?? (await next(limits, inTurn));
      if (batch.more && !closed && ahead(batch)) {
        const read: NonNullable<typeof pending> = { held: 0, batch: Promise.resolve(undefined) };
        read.batch = next(limits, inTurn).then(
          (b) => {
            if (pending === read) {
              read.held = weight(b.rows, stream.bytes);
              stream.slot.hold(read.held, true);
            }
            return b;
          },
          () => undefined,
        );
        pending = read;
      }
      return batch;
    },
    async close() {
      closed = true;
      if (pending === undefined) return [];
      return (await take())?.rows ?? [];
    },
  };
}

