import { type Batch, type BatchLimits, type BatchSource, weight } from "./bounded-stream.js";
import { readAhead } from "./read-ahead.js";
import type { StreamSlot } from "./stream-limits.js";

/** A keyset cursor over a table: each batch starts after the key of the last row of the one before. */
export interface KeysetReader<Row, Key, Message> {
  /** The batch after `after` (undefined: from the start), within `limits`. */
  read(after: Key | undefined, limits: BatchLimits): Promise<Batch<Row>>;
  /** The keyset position of a row. */
  key(row: Row): Key;
  bytes(row: Row): number;
  message(row: Row): Message;
}

/**
 * A BatchSource reading a table by keyset, each batch from the database in one
 * of the tenant's turns, the next one read while the stream sends the last
 * (readAhead), both counted on the stream's `slot`. A stream holds no more than
 * without reading ahead: each batch gets half the byte budget
 * (STREAM_BATCH_MAX_BYTES), and a batch heavier than half (one row larger
 * than half the budget, which comes alone) is sent without a batch read
 * ahead. So the two batches weigh at most the budget, or half of it plus one
 * row read ahead that is larger than half (a batch holds at least one row).
 */
export function keysetSource<Row, Key, Message>(reader: KeysetReader<Row, Key, Message>, slot: Pick<StreamSlot, "hold" | "release">): BatchSource<Row, Message> {
  let after: Key | undefined;
  const bytes = (row: Row) => reader.bytes(row);
  const batches = readAhead<Row>(async (limits, inTurn) => {
    const batch = await inTurn(() => reader.read(after, limits));
    const last = batch.rows[batch.rows.length - 1];
    if (last !== undefined) after = reader.key(last);
    return batch;
  }, { slot, bytes });
  return {
    read(limits, inTurn) {
      const half = { rows: limits.rows, bytes: Math.max(1, Math.floor(limits.bytes / 2)) };
      return batches.read(half, inTurn, (batch) => weight(batch.rows, bytes) <= half.bytes);
    },
    bytes,
    message: (row) => reader.message(row),
    close: () => batches.close(),
  };
}
