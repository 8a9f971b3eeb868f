import { clone, create, equals, isFieldSet, isMessage, type Message, toBinary, toJson } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  ClaimIncompleteWorkflowsResponseSchema,
  GetWorkflowExecutionResponseSchema,
  ListWorkflowExecutionsResponseSchema,
  SaveWorkflowExecutionResponseSchema,
  StreamIncompleteWorkflowsResponseSchema,
  type WorkflowExecution,
  WorkflowExecutionSchema,
  WorkflowStateService,
} from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import type { ExecutionRow } from "../../src/db/models/workflow-execution.js";
import { ExecutionWriter } from "../../src/services/workflow-state/encoding/execution-writer.js";
import { createExecutionEncoding, encodeAnswer } from "../../src/services/workflow-state/encoding/execution-encoding.js";
import { executionsBuilt, lazyExecution } from "../../src/services/workflow-state/encoding/lazy-execution.js";
import { executionFromRow } from "../../src/services/workflow-state/execution-row.js";
import { createLogger } from "../../src/logging/logger.js";
import { nested, plainRow, row, runs } from "./execution-rows.js";

// The contract of src/services/workflow-state/encoding/: a lazy execution is
// the message executionFromRow builds, to protobuf-es and to any reader; the
// encoding step hands the serializer answers whose bytes (binary) or JSON are
// exactly those of the answers with real messages, whether or not something
// read the executions first; and it builds no message for an answer nobody
// read.

/** Rows the general path accepts (the server stores no other kind). */
const accepted = row.filter((r) => {
  try {
    executionFromRow(r);
    return true;
  } catch {
    return false;
  }
});

function attempt<T>(f: () => T): { ok: true; value: T } | { ok: false; error: string } {
  try {
    return { ok: true, value: f() };
  } catch (err) {
    return { ok: false, error: String(err) };
  }
}

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");

const SINGLE_SCHEMAS = [
  GetWorkflowExecutionResponseSchema,
  SaveWorkflowExecutionResponseSchema,
  StreamIncompleteWorkflowsResponseSchema,
  ClaimIncompleteWorkflowsResponseSchema,
] as const;

describe("a lazy execution", () => {
  it("is, to protobuf-es and to readers, the message executionFromRow builds", () => {
    fc.assert(
      fc.property(accepted, (r) => {
        const real = executionFromRow(r);
        const lazy = lazyExecution(r);
        expect(hex(toBinary(WorkflowExecutionSchema, lazy))).toBe(hex(toBinary(WorkflowExecutionSchema, real)));
        // toJson rejects what JSON cannot hold (an infinite number in a Struct), for both alike.
        expect(attempt(() => toJson(WorkflowExecutionSchema, lazy))).toEqual(attempt(() => toJson(WorkflowExecutionSchema, real)));
        // equals, like toJson and clone, fails alike on what the message cannot hold (a context that is not an object).
        const other = executionFromRow(r);
        expect(attempt(() => equals(WorkflowExecutionSchema, lazy, other))).toEqual(attempt(() => equals(WorkflowExecutionSchema, real, other)));
        // clone checks what it copies (and rejects a lone surrogate in a map key, as for the real message).
        const cloned = attempt(() => clone(WorkflowExecutionSchema, lazy));
        const clonedReal = attempt(() => clone(WorkflowExecutionSchema, real));
        expect(cloned.ok ? hex(toBinary(WorkflowExecutionSchema, cloned.value)) : cloned.error).toBe(clonedReal.ok ? hex(toBinary(WorkflowExecutionSchema, clonedReal.value)) : clonedReal.error);
        // Explicit presence (legal_hold, definition, completed_at, lease) is told by own keys.
        for (const field of WorkflowExecutionSchema.fields) {
          expect(isFieldSet(lazy, field), field.name).toBe(isFieldSet(real, field));
          expect(Object.prototype.hasOwnProperty.call(lazy, field.localName), field.name).toBe(Object.prototype.hasOwnProperty.call(real, field.localName));
        }
        expect(Object.keys(lazy)).toEqual(Object.keys(real));
        expect({ ...lazy }).toEqual({ ...real });
        expect(lazy).toEqual(real);
      }),
      runs(300),
    );
  });

  it("is not built by isMessage, create or $typeName, and is built once by the first read", () => {
    const before = executionsBuilt();
    const lazy = lazyExecution(plainRow({ execution_id: "exec-lazy" }));
    expect(isMessage(lazy, WorkflowExecutionSchema)).toBe(true);
    expect(lazy.$typeName).toBe("orchestration.state.v1.WorkflowExecution");
    const answer = create(GetWorkflowExecutionResponseSchema, { execution: lazy });
    expect(answer.execution).toBe(lazy);
    expect(create(ListWorkflowExecutionsResponseSchema, { executions: [lazy] }).executions[0]).toBe(lazy);
    expect(executionsBuilt()).toBe(before);
    expect(lazy.executionId).toBe("exec-lazy");
    expect(lazy.legalHold).toBeUndefined();
    expect(executionsBuilt()).toBe(before + 1);
    expect(lazy.workflowName).toBe("fulfil-order");
    expect(executionsBuilt()).toBe(before + 1);
  });

  it("takes writes, and writes to it are in what protobuf-es writes", () => {
    const lazy = lazyExecution(plainRow());
    lazy.errorMessage = "set by an interceptor";
    lazy.legalHold = true;
    delete (lazy as Partial<WorkflowExecution>).completedAt;
    const want = executionFromRow(plainRow());
    want.errorMessage = "set by an interceptor";
    want.legalHold = true;
    expect(hex(toBinary(WorkflowExecutionSchema, lazy))).toBe(hex(toBinary(WorkflowExecutionSchema, want)));
  });
});

/** The answer `schema` holding the lazy executions of `rows`, as a handler returns it. */
function lazyAnswer(schema: (typeof SINGLE_SCHEMAS)[number] | typeof ListWorkflowExecutionsResponseSchema, rows: ExecutionRow[], token = ""): Message {
  if (schema === ListWorkflowExecutionsResponseSchema) return create(schema, { executions: rows.map(lazyExecution), nextPageToken: token });
  return create(schema, { execution: lazyExecution(rows[0]!) });
}

/** The same answer with real messages: what the bytes must be those of. */
function realAnswer(schema: (typeof SINGLE_SCHEMAS)[number] | typeof ListWorkflowExecutionsResponseSchema, rows: ExecutionRow[], token = ""): Message {
  if (schema === ListWorkflowExecutionsResponseSchema) return create(schema, { executions: rows.map(executionFromRow), nextPageToken: token });
  return create(schema, { execution: executionFromRow(rows[0]!) });
}

const schemaOf = (m: Message) => [...SINGLE_SCHEMAS, ListWorkflowExecutionsResponseSchema].find((s) => s.typeName === m.$typeName)!;
const binaryOf = (m: Message) => hex(toBinary(schemaOf(m), m as never));

describe("the encoding step", () => {
  const writer = new ExecutionWriter();
  const anySchema = fc.constantFrom(...SINGLE_SCHEMAS, ListWorkflowExecutionsResponseSchema);

  it("gives binary codecs the bytes of the answer with real messages, without building one, for every answer type", () => {
    fc.assert(
      fc.property(anySchema, fc.array(accepted, { minLength: 1, maxLength: 4 }), fc.constantFrom("", "next-page", "é".repeat(100)), (schema, rows, token) => {
        const before = executionsBuilt();
        const encoded = encodeAnswer(lazyAnswer(schema, rows, token), writer);
        expect(executionsBuilt()).toBe(before);
        expect(binaryOf(encoded)).toBe(binaryOf(realAnswer(schema, rows, token)));
      }),
      runs(300),
    );
  });

  it("gives binary codecs what an interceptor changed in an execution it read, and the same bytes when it only read", () => {
    fc.assert(
      fc.property(anySchema, fc.array(accepted, { minLength: 1, maxLength: 4 }), fc.nat(), fc.boolean(), (schema, rows, at, change) => {
        const answer = lazyAnswer(schema, rows, "t");
        const want = realAnswer(schema, rows, "t");
        const executions = (m: Message) => ("executions" in m ? (m.executions as WorkflowExecution[]) : [(m as unknown as { execution: WorkflowExecution }).execution]);
        const i = at % executions(answer).length;
        const read = executions(answer)[i]!;
        expect(read.executionId).toBe(rows[schema === ListWorkflowExecutionsResponseSchema ? i : 0]!.execution_id);
        if (change) {
          read.initiatedBy = "changed by an interceptor";
          executions(want)[i]!.initiatedBy = "changed by an interceptor";
        }
        expect(binaryOf(encodeAnswer(answer, writer))).toBe(binaryOf(want));
      }),
      runs(200),
    );
  });

  it("gives JSON codecs plain messages, whose JSON is the real answer's", () => {
    for (const schema of [...SINGLE_SCHEMAS, ListWorkflowExecutionsResponseSchema]) {
      const rows = [plainRow({ execution_id: "a" }), plainRow({ execution_id: "b", legal_hold: true, context: { "ключ": [1, null, { x: "😀" }] } })];
      const encoded = encodeAnswer(lazyAnswer(schema, rows, "next"), undefined);
      // Plain: a Proxy could not be cloned.
      expect(() => structuredClone(encoded)).not.toThrow();
      expect(toJson(schemaOf(encoded), encoded as never)).toEqual(toJson(schemaOf(encoded), realAnswer(schema, rows, "next") as never));
    }
  });

  it("leaves the handler's answer as it was: an interceptor holding it still reads the real execution", () => {
    const answer = create(GetWorkflowExecutionResponseSchema, { execution: lazyExecution(plainRow({ execution_id: "kept" })) });
    const encoded = encodeAnswer(answer, writer);
    expect(encoded).not.toBe(answer);
    expect(answer.$unknown).toBeUndefined();
    expect(answer.execution?.executionId).toBe("kept");
  });

  it("keeps unknown fields an answer already had, after the executions, as toBinary writes them", () => {
    const extra = [{ no: 99, wireType: 0, data: Uint8Array.of(0x05) }];
    const answer = create(GetWorkflowExecutionResponseSchema, { execution: lazyExecution(plainRow()) });
    answer.$unknown = [...extra];
    const want = create(GetWorkflowExecutionResponseSchema, { execution: executionFromRow(plainRow()) });
    want.$unknown = [...extra];
    expect(binaryOf(encodeAnswer(answer, writer))).toBe(binaryOf(want));
  });

  it("passes other answers and answers without an execution as they are", () => {
    const empty = create(GetWorkflowExecutionResponseSchema);
    expect(encodeAnswer(empty, writer)).toBe(empty);
    const other = create(WorkflowExecutionSchema, { executionId: "x" });
    expect(encodeAnswer(other, writer)).toBe(other);
  });
});

describe("the encoding step as an interceptor", () => {
  /** A row stored with a value the message cannot hold (step outputs nested past fromJson's limit). */
  const broken = plainRow({ execution_id: "broken", step_outputs: { s: nested(120) } });
  const method = WorkflowStateService.method.getWorkflowExecution;

  function setUp() {
    const lines: Record<string, unknown>[] = [];
    const encoding = createExecutionEncoding(createLogger("debug", (line) => lines.push(JSON.parse(line) as Record<string, unknown>)));
    const req = (contentType: string) => ({ header: new Headers({ "content-type": contentType }), method }) as never;
    return { lines, encoding, req };
  }

  it.each(["application/grpc", "application/json"])("fails a unary call whose row cannot be encoded with INTERNAL, without its cause, and logs the cause (%s)", async (contentType) => {
    const { lines, encoding, req } = setUp();
    const answer = create(GetWorkflowExecutionResponseSchema, { execution: lazyExecution(broken) });
    const call = encoding(async () => ({ stream: false, message: answer }) as never);
    const err = await call(req(contentType)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.Internal);
    expect((err as ConnectError).rawMessage).toBe("internal error");
    expect(lines.map((l) => [l.level, l.msg, l.procedure])).toEqual([["error", "internal error", "orchestration.state.v1.WorkflowStateService/GetWorkflowExecution"]]);
  });

  it("gives a stream's execution bytes to one serialization, the real answer's, and fails a second with INTERNAL rather than send an empty execution", async () => {
    const { encoding, req } = setUp();
    const rows = [plainRow({ execution_id: "1" }), plainRow({ execution_id: "2", context: { blob: "x".repeat(100_000) } })];
    async function* messages() {
      for (const r of rows) yield create(StreamIncompleteWorkflowsResponseSchema, { execution: lazyExecution(r) });
    }
    const res = (await encoding(async () => ({ stream: true, message: messages() }) as never)(req("application/grpc"))) as unknown as { message: AsyncIterable<Message> };
    const sent: Message[] = [];
    for await (const m of res.message) {
      expect(hex(toBinary(StreamIncompleteWorkflowsResponseSchema, m as never))).toBe(
        hex(toBinary(StreamIncompleteWorkflowsResponseSchema, create(StreamIncompleteWorkflowsResponseSchema, { execution: executionFromRow(rows[sent.length]!) }))),
      );
      sent.push(m);
    }
    expect(sent).toHaveLength(2);
    for (const m of sent) {
      let err: unknown;
      try {
        toBinary(StreamIncompleteWorkflowsResponseSchema, m as never);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConnectError);
      expect((err as ConnectError).code).toBe(Code.Internal);
    }
  });

  it("ends a stream at a row that cannot be encoded with INTERNAL, after the rows before it, and closes the handler's messages", async () => {
    const { encoding, req } = setUp();
    let closed = false;
    async function* messages() {
      try {
        for (const r of [plainRow({ execution_id: "1" }), broken, plainRow({ execution_id: "3" })]) {
          yield create(StreamIncompleteWorkflowsResponseSchema, { execution: lazyExecution(r) });
        }
      } finally {
        closed = true;
      }
    }
    const res = (await encoding(async () => ({ stream: true, message: messages() }) as never)(req("application/grpc"))) as unknown as { message: AsyncIterable<Message> };
    const sent: string[] = [];
    const err = await (async () => {
      for await (const m of res.message) sent.push(hex(toBinary(StreamIncompleteWorkflowsResponseSchema, m as never)));
    })().catch((e: unknown) => e);
    expect(sent).toEqual([hex(toBinary(StreamIncompleteWorkflowsResponseSchema, create(StreamIncompleteWorkflowsResponseSchema, { execution: executionFromRow(plainRow({ execution_id: "1" })) })))]);
    expect(ConnectError.from(err).code).toBe(Code.Internal);
    expect(closed).toBe(true);
  });
});
