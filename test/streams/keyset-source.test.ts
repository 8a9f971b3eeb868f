// The keyset source of StreamIncompleteWorkflows (src/streams/keyset-source.ts)
// through the stream loop, against a fake table: each batch starts after the
// last row of the one before, the next batch is read while the stream sends
// the last (read ahead, src/streams/read-ahead.ts), and a stalled client makes
// the server hold no more than the stream's byte budget, counted against the
// buffer.
import { describe, expect, it } from "vitest";
import { boundedStream } from "../../src/streams/bounded-stream.js";
import { keysetSource } from "../../src/streams/keyset-source.js";
import type { StreamSlot } from "../../src/streams/stream-limits.js";
import { context, limits, message, readTable, type Row } from "./support.js";

/** A table read by keyset through keysetSource, recording each read and what had been taken when it was made. */
function table(rows: Row[], slot: StreamSlot, failReads: number[] = []) {
  const reads: { after: number | undefined; takenBefore: number }[] = [];
  let taken = 0;
  const source = keysetSource(
    {
      async read(after: number | undefined, l) {
        reads.push({ after, takenBefore: taken });
        if (failReads.includes(reads.length)) throw new Error(`read ${reads.length} failed`);
        return readTable(rows, after, l);
      },
      key: (r) => r.id,
      bytes: (r) => r.bytes,
      message,
    },
    slot,
  );
  return { source, reads, take: () => taken++ };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe("keysetSource", () => {
  it("streams every row once, in key order, reading each batch while the stream sends the one before", async () => {
    const rows = Array.from({ length: 10 }, (_, i) => ({ id: i + 1, bytes: 100 }));
    const l = limits();
    let t: ReturnType<typeof table> | undefined;
    const sent: number[] = [];
    for await (const m of boundedStream(context("a"), l, (slot) => (t = table(rows, slot)).source)) {
      sent.push(m.status);
      t!.take();
    }
    expect(sent).toEqual(rows.map((r) => r.id));
    // Batches of 4 (the row limit): each read starts after the last row of the batch before, and the
    // second and third were read when the client had taken nothing of the batch before them.
    expect(t!.reads).toEqual([
      { after: undefined, takenBefore: 0 },
      { after: 4, takenBefore: 0 },
      { after: 8, takenBefore: 4 },
    ]);
    expect(l.stats()).toEqual({ streams: 0, bufferedBytes: 0 });
  });

  it("holds no more than the byte budget for a stalled client: two batches of half of it, both counted, given back at the end", async () => {
    const rows = Array.from({ length: 100 }, (_, i) => ({ id: i + 1, bytes: 200 }));
    const l = limits();
    let t: ReturnType<typeof table> | undefined;
    const it = boundedStream(context("a"), l, (slot) => (t = table(rows, slot)).source);
    expect((await it.next()).value?.status).toBe(1);
    await tick();
    // The client stops at the first message. Batches get half the budget of 1,000 bytes: two rows each.
    // Held: the batch being sent (its first row counts until the client asks for the next) and the one
    // read ahead, nothing more.
    expect(t!.reads).toHaveLength(2);
    expect(l.stats()).toEqual({ streams: 1, bufferedBytes: 4 * 200 });
    await tick();
    expect(t!.reads).toHaveLength(2);
    await it.return(undefined);
    expect(l.stats()).toEqual({ streams: 0, bufferedBytes: 0 });
  });

  it("sends a row heavier than half the budget without a batch read ahead", async () => {
    const rows = [{ id: 1, bytes: 900 }, ...Array.from({ length: 9 }, (_, i) => ({ id: i + 2, bytes: 100 }))];
    const l = limits();
    let t: ReturnType<typeof table> | undefined;
    const it = boundedStream(context("a"), l, (slot) => (t = table(rows, slot)).source);
    expect((await it.next()).value?.status).toBe(1);
    await tick();
    // The 900-byte row came alone; nothing is read until the client has taken it.
    expect([t!.reads.length, l.stats().bufferedBytes]).toEqual([1, 900]);
    expect((await it.next()).value?.status).toBe(2);
    await tick();
    // Then batches of four 100-byte rows (the row limit), one read ahead.
    expect(t!.reads.map((r) => r.after)).toEqual([undefined, 1, 5]);
    await it.return(undefined);
    expect(l.stats()).toEqual({ streams: 0, bufferedBytes: 0 });
  });

  it("reads a batch again when its read ahead failed, and fails the stream only if that fails too", async () => {
    const rows = Array.from({ length: 12 }, (_, i) => ({ id: i + 1, bytes: 100 }));
    const sent: number[] = [];
    let t: ReturnType<typeof table> | undefined;
    for await (const m of boundedStream(context("a"), limits(), (slot) => (t = table(rows, slot, [2])).source)) sent.push(m.status);
    expect(sent).toEqual(rows.map((r) => r.id));
    expect(t!.reads.map((r) => r.after)).toEqual([undefined, 4, 4, 8]);

    const failing = boundedStream(context("a"), limits(), (slot) => table(rows, slot, [2, 3]).source);
    const got: number[] = [];
    const err = await (async () => {
      for await (const m of failing) got.push(m.status);
    })().then(
      () => undefined,
      (e: unknown) => (e as Error).message,
    );
    expect([got, err]).toEqual([[1, 2, 3, 4], "read 3 failed"]);
  });
});
