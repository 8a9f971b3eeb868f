// The one loop every server stream runs through (src/streams/bounded-stream.ts),
// against a fake source: batches bounded in rows and bytes, the next batch
// read only once the client has taken the last one, bytes counted from the
// read until the client takes them, the server-wide caps.
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { HealthCheckResponseSchema } from "../../gen/health/v1/health_pb.js";
import { type BatchLimits, type BatchSource, boundedStream } from "../../src/streams/bounded-stream.js";
import type { StreamLimits } from "../../src/streams/stream-limits.js";
import { context, limits, message, readTable, type Row } from "./support.js";

/** A table of rows read by keyset, one batch per read, recording each read and what had been taken when it was made. */
function table(rows: Row[]) {
  const reads: { after: number | undefined; limits: BatchLimits; takenBefore: number }[] = [];
  let taken = 0;
  let after: number | undefined;
  const source: BatchSource<Row, ReturnType<typeof message>> = {
    read: (l, inTurn) =>
      inTurn(async () => {
        reads.push({ after, limits: l, takenBefore: taken });
        const { rows: batch, more } = readTable(rows, after, l);
        after = batch.at(-1)?.id ?? after;
        return { rows: batch, more };
      }),
    bytes: (r) => r.bytes,
    message,
  };
  return { source, reads, take: () => taken++ };
}

describe("boundedStream", () => {
  it("reads batches within the row and byte limits, and the next one only once every message of the last was taken", async () => {
    const rows = [300, 300, 300, 300, 2_500, 100, 100, 100, 100, 100].map((bytes, i) => ({ id: i + 1, bytes }));
    const t = table(rows);
    const l = limits();
    const sent: number[] = [];
    for await (const m of boundedStream(context("a"), l, () => t.source)) {
      sent.push(m.status);
      t.take();
    }
    expect(sent).toEqual(rows.map((r) => r.id));
    // 3 × 300 (a fourth would pass 1,000), the 2,500-byte row alone, 4 rows (the row limit), the last.
    expect(t.reads.map((r) => [r.after, r.takenBefore])).toEqual([
      [undefined, 0],
      [3, 3],
      [4, 4],
      [5, 5],
      [9, 9],
    ]);
    expect(t.reads.every((r) => r.limits.rows === 4 && r.limits.bytes === 1_000)).toBe(true);
    expect(l.stats()).toEqual({ streams: 0, bufferedBytes: 0 });
  });

  it("counts a batch's bytes until the client takes each message: a stalled client holds one batch", async () => {
    const rows = Array.from({ length: 100 }, (_, i) => ({ id: i + 1, bytes: 400 }));
    const t = table(rows);
    const l = limits();
    const it = boundedStream(context("a"), l, () => t.source);
    expect((await it.next()).value?.status).toBe(1);
    // The client stops after one message: the batch of two rows is read, one still held.
    expect(l.stats()).toEqual({ streams: 1, bufferedBytes: 800 });
    expect((await it.next()).value?.status).toBe(2);
    expect(l.stats().bufferedBytes).toBe(400);
    expect(t.reads).toHaveLength(1);
    await it.return(undefined);
    expect(l.stats()).toEqual({ streams: 0, bufferedBytes: 0 });
  });

  const rows900 = Array.from({ length: 10 }, (_, i) => ({ id: i + 1, bytes: 900 }));
  const codeOf = (p: Promise<unknown>) => p.then(() => "ok", (e: unknown) => ConnectError.from(e).code);
  const opener = (l: StreamLimits) => async (tenant: string) => {
    const it = boundedStream(context(tenant), l, () => table(rows900).source);
    await it.next();
    return it;
  };

  it("answers RESOURCE_EXHAUSTED past the tenant's open streams, then past the server's", async () => {
    const l = limits({ streamsMax: 3, tenantStreamsMax: 2 });
    const open = opener(l);
    const a = [await open("a"), await open("a")];
    expect(await codeOf(open("a"))).toBe(Code.ResourceExhausted);
    const b = await open("b");
    expect(await codeOf(open("c"))).toBe(Code.ResourceExhausted);
    await b.return(undefined);
    const c = await open("c");
    await Promise.all([...a, c].map((it) => it.return(undefined)));
    expect(l.stats()).toEqual({ streams: 0, bufferedBytes: 0 });
  });

  it("answers RESOURCE_EXHAUSTED when a batch would take the bytes all streams hold past their cap", async () => {
    const l = limits({ bufferMaxBytes: 2_500 });
    const open = opener(l);
    // Each stalled stream holds its one-row batch of 900 bytes; a third batch of up to 1,000 would pass 2,500.
    const held = [await open("a"), await open("b")];
    expect(l.stats().bufferedBytes).toBe(1_800);
    expect(await codeOf(open("c"))).toBe(Code.ResourceExhausted);
    await held[0]!.return(undefined);
    held[0] = await open("c");
    await Promise.all(held.map((it) => it.return(undefined)));
    expect(l.stats()).toEqual({ streams: 0, bufferedBytes: 0 });
  });

  it("a source waiting outside a turn (a watch between transitions) holds no budget", async () => {
    // Room for two batches' budgets; ten streams wait for their next message.
    const l = limits({ bufferMaxBytes: 2_000 });
    const stop = new AbortController();
    const waiting = Array.from({ length: 10 }, () =>
      boundedStream(context("a", stop.signal), l, () => ({
        read: () => new Promise<never>((_, reject) => stop.signal.addEventListener("abort", () => reject(stop.signal.reason))),
        bytes: () => 0,
        message: () => create(HealthCheckResponseSchema),
      })).next(),
    );
    await new Promise((resolve) => setImmediate(resolve));
    expect(l.stats()).toEqual({ streams: 10, bufferedBytes: 0 });
    stop.abort(new ConnectError("the server is shutting down", Code.Unavailable));
    expect(new Set(await Promise.all(waiting.map((w) => w.then(() => "ok", (e: unknown) => ConnectError.from(e).code))))).toEqual(new Set([Code.Unavailable]));
    expect(l.stats()).toEqual({ streams: 0, bufferedBytes: 0 });
  });

  it("ends with the call's error when it is stopped, and closes its source with the rows read and not sent", async () => {
    const closed: number[][] = [];
    const stop = new AbortController();
    const t = table(Array.from({ length: 10 }, (_, i) => ({ id: i + 1, bytes: 10 })));
    const it = boundedStream(context("a", stop.signal), limits(), () => ({ ...t.source, close: (unsent: Row[]) => void closed.push(unsent.map((r) => r.id)) }));
    await it.next();
    await it.next();
    stop.abort(new ConnectError("the server is shutting down", Code.Unavailable));
    const err = await it.next().then(() => undefined, (e: unknown) => ConnectError.from(e));
    // The batch held rows 1-4; 1 and 2 were handed over.
    expect([err?.code, closed]).toEqual([Code.Unavailable, [[3, 4]]]);
  });
});
