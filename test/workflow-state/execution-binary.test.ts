import { create, fromBinary, toBinary, toJson } from "@bufbuild/protobuf";
import { TimestampSchema } from "@bufbuild/protobuf/wkt";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type StreamIncompleteWorkflowsResponse, StreamIncompleteWorkflowsResponseSchema, WorkflowExecutionSchema } from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { timestampFromDb } from "../../src/db/convert.js";
import type { ExecutionRow } from "../../src/db/models/workflow-execution.js";
import { encodeExecution, encodeExecutionDelimited } from "../../src/services/workflow-state/encoding/execution-binary.js";
import { ExecutionWriter } from "../../src/services/workflow-state/encoding/execution-writer.js";
import { encodeAnswer, isBinaryCodec } from "../../src/services/workflow-state/encoding/execution-encoding.js";
import { lazyExecution } from "../../src/services/workflow-state/encoding/lazy-execution.js";
import { executionFromRow } from "../../src/services/workflow-state/execution-row.js";
import { dbTimestamp, nested, plainRow, row, runs } from "./execution-rows.js";

// Binary answers carry executions encoded straight from their rows
// (src/services/workflow-state/encoding/execution-binary.ts). These properties
// pin that the bytes are exactly those of the general path,
// toBinary(executionFromRow(row)), for rows of every shape the database can
// hold, and that a row the general path rejects is rejected too.

type Outcome = { ok: true; bytes: Uint8Array } | { ok: false; error: string };
function outcome(f: () => Uint8Array): Outcome {
  try {
    return { ok: true, bytes: f() };
  } catch (err) {
    return { ok: false, error: String(err) };
  }
}
const why = (o: Outcome) => (o.ok ? "encoded" : o.error);

/** The general path: the message of the row, encoded by @bufbuild/protobuf. */
const reference = (row: ExecutionRow) => toBinary(WorkflowExecutionSchema, executionFromRow(row));

function expectSameEncoding(row: ExecutionRow): void {
  const want = outcome(() => reference(row));
  const got = outcome(() => encodeExecution(row));
  expect(got.ok, `general path: ${why(want)}; streaming: ${why(got)}`).toBe(want.ok);
  if (want.ok && got.ok) expect(Buffer.from(got.bytes).toString("hex")).toBe(Buffer.from(want.bytes).toString("hex"));
}

/** A stream message of `r` as the encoding step hands it to a binary serializer. */
const streamAnswer = (r: ExecutionRow, writer: ExecutionWriter) =>
  encodeAnswer(create(StreamIncompleteWorkflowsResponseSchema, { execution: lazyExecution(r) }), writer) as StreamIncompleteWorkflowsResponse;

// ---- properties ------------------------------------------------------------

describe("a streamed execution's bytes", () => {
  it("are those of toBinary(executionFromRow(row)) for any row, and a row the general path rejects is rejected", () => {
    fc.assert(fc.property(row, expectSameEncoding), runs(2_000));
  });

  it("are the same when one writer encodes many rows one after the other, across chunks", () => {
    const writer = new ExecutionWriter();
    // Views handed out earlier stay valid while later rows are written (and chunks replaced).
    const written: [Uint8Array, Uint8Array][] = [];
    fc.assert(
      fc.property(row, (r) => {
        const want = outcome(() => toBinary(StreamIncompleteWorkflowsResponseSchema, create(StreamIncompleteWorkflowsResponseSchema, { execution: executionFromRow(r) })));
        const got = outcome(() => toBinary(StreamIncompleteWorkflowsResponseSchema, streamAnswer(r, writer)));
        expect(got.ok, `general path: ${why(want)}; streaming: ${why(got)}`).toBe(want.ok);
        if (want.ok && got.ok) {
          expect(Buffer.from(got.bytes).toString("hex")).toBe(Buffer.from(want.bytes).toString("hex"));
          written.push([encodeExecutionDelimited(writer, r), want.bytes]);
        }
      }),
      runs(1_000),
    );
    for (const [view, response] of written) {
      // The response is tag 0x0a, then the delimited execution.
      expect(Buffer.from(view).equals(Buffer.from(response.subarray(1)))).toBe(true);
    }
  });

  it("are right for messages larger than a writer's chunk, and for lengths at each varint step", () => {
    const writer = new ExecutionWriter();
    for (const n of [0, 1, 100, 127, 128, 16_383, 16_384, 200_000, 300_000, 2_097_152, 5_000_000]) {
      for (const r of [plainRow({ error_message: "x".repeat(n) }), plainRow({ context: { big: "é".repeat(n / 2) } }), plainRow({ context: { list: Array.from({ length: Math.min(n, 50_000) }, (_, i) => i) } })]) {
        expectSameEncoding(r);
        const response = toBinary(StreamIncompleteWorkflowsResponseSchema, streamAnswer(r, writer));
        expect(Buffer.from(response).equals(Buffer.from(toBinary(StreamIncompleteWorkflowsResponseSchema, create(StreamIncompleteWorkflowsResponseSchema, { execution: executionFromRow(r) }))))).toBe(true);
      }
    }
  });

  it("decode to the message executionFromRow builds", () => {
    const r = plainRow({
      definition: { name: "w", steps: [{ step_id: "a", parameters: { k: [1, "x", null] }, timeout: "30s" }] },
      step_outputs: { fetch: { rows: 3 }, "": null },
      labels: { team: "fulfilment", "": "" },
      completed_at: "1900-01-01 00:00:00.000001+00",
    });
    const decoded = fromBinary(WorkflowExecutionSchema, encodeExecution(r));
    expect(toJson(WorkflowExecutionSchema, decoded)).toEqual(toJson(WorkflowExecutionSchema, executionFromRow(r)));
  });

  it("end with legal_hold (field 17: bytes 88 01 01) while held, and leave it out otherwise", () => {
    const held = Buffer.from(encodeExecution(plainRow({ legal_hold: true })));
    const free = Buffer.from(encodeExecution(plainRow({ legal_hold: false })));
    expect(held.subarray(held.length - 3).toString("hex")).toBe("880101");
    expect(held.subarray(0, held.length - 3).equals(free)).toBe(true);
    expect(fromBinary(WorkflowExecutionSchema, held).legalHold).toBe(true);
    expect(fromBinary(WorkflowExecutionSchema, free).legalHold).toBeUndefined();
    expectSameEncoding(plainRow({ legal_hold: true }));
  });

  it("carry the lease (field 16) while the row has one, before legal_hold, and leave it out otherwise", () => {
    const leased = plainRow({ lease_owner: "replica-a", lease_token: "1000000000042", lease_expire_time: "2026-12-04 21:00:05.123456+00" });
    const bytes = Buffer.from(encodeExecution(leased));
    const free = Buffer.from(encodeExecution(plainRow()));
    // Tag of field 16, length-delimited: 0x82 0x01.
    expect(bytes.subarray(0, free.length).equals(free)).toBe(true);
    expect(bytes.subarray(free.length, free.length + 2).toString("hex")).toBe("8201");
    const decoded = fromBinary(WorkflowExecutionSchema, bytes);
    expect(decoded.lease?.owner).toBe("replica-a");
    expect(decoded.lease?.fencingToken).toBe(1_000_000_000_042n);
    expect(decoded.lease?.expireTime).toEqual(timestampFromDb("2026-12-04 21:00:05.123456+00"));
    expectSameEncoding(leased);
    expectSameEncoding({ ...leased, legal_hold: true });
    expect(fromBinary(WorkflowExecutionSchema, free).lease).toBeUndefined();
  });

  it("fail, like the general path, on step outputs nested past fromJson's limit, and not on a context nested as deep", () => {
    for (let depth = 90; depth <= 110; depth++) {
      expectSameEncoding(plainRow({ step_outputs: { s: nested(depth) } }));
      expectSameEncoding(plainRow({ context: { s: nested(depth) } }));
    }
    expect(() => encodeExecution(plainRow({ step_outputs: { s: nested(100) } }))).toThrow();
    expect(() => encodeExecution(plainRow({ context: { s: nested(500) } }))).not.toThrow();
  });

  it("fail, like the general path, on timestamptz text it cannot read", () => {
    for (const text of ["infinity", "0044-03-15 12:00:00+00 BC", "2026-11-26", ""]) {
      expect(() => reference(plainRow({ started_at: text }))).toThrow();
      expect(() => encodeExecution(plainRow({ started_at: text }))).toThrow();
    }
  });
});

describe("timestampFromDb", () => {
  /** The parser as it was before the fast path, kept as the reference. */
  function previousTimestampFromDb(text: string) {
    const m = /^(\d{4,})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?([+-])(\d\d)(?::?(\d\d))?(?::?(\d\d))?$/.exec(text);
    if (m === null) throw new Error(`unexpected timestamptz text "${text}"`);
    const [, y, mo, d, h, mi, s, frac = "", sign, oh, om = "0", os = "0"] = m;
    const utcMs = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s));
    const date = new Date(utcMs);
    if (Number(y) < 100) date.setUTCFullYear(Number(y));
    const offsetSeconds = (sign === "-" ? -1 : 1) * (Number(oh) * 3600 + Number(om) * 60 + Number(os));
    const seconds = BigInt(date.getTime() / 1000 - offsetSeconds);
    return create(TimestampSchema, { seconds, nanos: Number(frac.padEnd(6, "0")) * 1000 });
  }

  const anyText = fc.oneof(
    dbTimestamp,
    // Near misses: a character changed, dropped or added.
    fc.tuple(dbTimestamp, fc.nat(), fc.constantFrom("", "0", "9", " ", ":", "-", "+", ".", "T", "x")).map(([t, i, c]) => t.slice(0, i % (t.length + 1)) + c + t.slice((i % (t.length + 1)) + 1)),
    fc.tuple(dbTimestamp, fc.nat()).map(([t, i]) => t.slice(0, i % (t.length + 1)) + t.slice((i % (t.length + 1)) + 1)),
  );

  it("reads every text as the previous parser did, and rejects what it rejected", () => {
    fc.assert(
      fc.property(anyText, (text) => {
        let want: unknown;
        let got: unknown;
        try {
          want = previousTimestampFromDb(text);
        } catch {
          want = "rejected";
        }
        try {
          got = timestampFromDb(text);
        } catch {
          got = "rejected";
        }
        expect(got).toEqual(want);
      }),
      runs(5_000),
    );
  });
});

describe("isBinaryCodec", () => {
  it("is true only for the protobuf binary content types of gRPC, gRPC-Web and Connect (unary and streaming)", () => {
    for (const type of ["application/grpc", "application/grpc+proto", "application/grpc-web", "application/grpc-web+proto", "application/connect+proto", "application/proto", "Application/GRPC"]) {
      expect(isBinaryCodec(type), type).toBe(true);
    }
    for (const type of [null, "", "application/grpc+json", "application/grpc-web+json", "application/connect+json", "application/json", "application/grpc-web-text", "application/grpc+proto; charset=utf-8", "application/grpc+protobuf"]) {
      expect(isBinaryCodec(type), String(type)).toBe(false);
    }
  });
});
