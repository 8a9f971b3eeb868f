import { toBinary } from "@bufbuild/protobuf";
import fc from "fast-check";
import type { Knex } from "knex";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WorkflowExecutionSchema } from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { JsonText, parseJsonAttributes } from "../../src/db/models/plain-rows.js";
import { type ExecutionRow, WorkflowExecutionModel } from "../../src/db/models/workflow-execution.js";
import { JSONB_AS_TEXT } from "../../src/db/type-parsers.js";
import { encodeExecution, encodeExecutionDelimited } from "../../src/services/workflow-state/encoding/execution-binary.js";
import { ExecutionWriter } from "../../src/services/workflow-state/encoding/execution-writer.js";
import { writeStructFromJsonText } from "../../src/services/workflow-state/encoding/struct-from-json-text.js";
import { executionFromRow } from "../../src/services/workflow-state/execution-row.js";
import { CONTEXT } from "../../bench/lib/seed.js";
import { createTestDatabase } from "../support/backend.js";
import { jsonbText, nested, plainRow, row, runs } from "./execution-rows.js";

// The reads of executions keep `context` as its jsonb text (KEEP_TEXT in
// src/db/queries/workflow-executions.ts, read with JSONB_AS_TEXT), and the stream's encoder writes
// the Struct straight from that text (struct-from-json-text.ts) where it can.
// The contract: the bytes are those of the general path on the parsed text,
// toBinary(executionFromRow(row)), whichever way the encoder took; and the
// text PostgreSQL (and PGlite) actually prints takes the direct way.

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");

type Outcome = { ok: true; bytes: string } | { ok: false };
function outcome(f: () => Uint8Array): Outcome {
  try {
    return { ok: true, bytes: hex(f()) };
  } catch {
    return { ok: false };
  }
}

/**
 * Same bytes (or the same failure) from the encoder and the general path,
 * with the context as text, or as reading the column as jsonb gives it: pg
 * parses the text, and parseJsonAttributes a top-level string once more.
 */
function expectSameBytes(r: ExecutionRow, text: string): void {
  const asText = { ...r, context: new JsonText(text) };
  const asJsonb = () => parseJsonAttributes(WorkflowExecutionModel, { ...r, context: JSON.parse(text) as object });
  const want = outcome(() => toBinary(WorkflowExecutionSchema, executionFromRow(asJsonb())));
  expect(outcome(() => encodeExecution(asText))).toEqual(want);
  expect(outcome(() => toBinary(WorkflowExecutionSchema, executionFromRow(asText)))).toEqual(want);
}

/** Whether the encoder writes `text` directly (true) or declines it to the general path. */
function direct(text: string): boolean {
  const w = new ExecutionWriter();
  const taken = writeStructFromJsonText(w, text);
  // Declining leaves nothing written.
  if (!taken) expect(w.finish().length).toBe(0);
  return taken;
}

describe("an execution whose context is read as its jsonb text", () => {
  it("is encoded with the bytes of the general path, for any context", () => {
    fc.assert(
      fc.property(row, (r) => {
        if (r.context === null) return;
        expectSameBytes(r, jsonbText(r.context));
      }),
      runs(2_000),
    );
  });

  it("is encoded the same when the text is not as jsonb prints it, or nests deeper than the direct way goes", () => {
    const texts = [
      '{"a":1}',
      '{ "a": 1 }',
      '{"a": 1,"b": 2}',
      '{"a": 1e3}',
      '{"a": 01}',
      '{"a": 1.}',
      '{"a": tru}',
      '{"a": "x\ty"}',
      '{"a": "\\u00e9\\ud83d\\ude00", "b": "\\ud800"}',
      '{"a": 1} ',
      '{"a": 1}x',
      '{"a": [1, 2',
      '{"a": "unterminated',
      '{"10": 1, "9": 2, "a": 3}',
      '{"a": 1, "__proto__": {"b": 2}}',
      '"{\\"a\\": 1}"',
      "[1, 2]",
      "5",
      "null",
      JSON.stringify({ deep: nested(300) }).replaceAll(":", ": "),
      `{"n": ${"9".repeat(400)}, "m": -0, "k": 123456789012345678}`,
    ];
    for (const text of texts) expectSameBytes(plainRow(), text);
  });

  it("is written directly for what contexts hold: nested objects and lists, numbers, escapes, text outside ASCII, long strings", () => {
    for (const value of [
      CONTEXT,
      { orderId: 1, amount: 19.99, neg: -2.5, big: 1e300, tiny: 5e-324, zero: 0, flags: [true, false, null], empty: {}, none: [] },
      { quote: 'say "hi"\n\t\\', control: "\u0001", accents: "Musterstraße", cjk: "日本語", emoji: "😀", long: "x".repeat(20_000) },
    ]) {
      const text = jsonbText(value);
      expect(direct(text), text.slice(0, 80)).toBe(true);
      expectSameBytes(plainRow(), text);
    }
  });

  it("is the same when one writer writes many of them, its chunks ending inside strings of every kind", () => {
    // A writer's chunk is 256 KiB: these rows cross several chunk ends, most of them inside a string.
    const writer = new ExecutionWriter();
    const written: [Uint8Array, string][] = [];
    for (let i = 0; i < 120; i++) {
      const text = jsonbText({
        id: i,
        plain: "p".repeat(1_000 + i * 37),
        accented: "é".repeat(200 + i),
        escaped: `"${"\\n".repeat(100 + i)}"`,
        // Mostly short strings, so that chunk ends fall inside them too.
        items: Array.from({ length: 500 + i }, (_, k) => `item-${k}`),
      });
      const r = plainRow({ context: new JsonText(text) });
      const want = hex(toBinary(WorkflowExecutionSchema, executionFromRow({ ...r, context: JSON.parse(text) as object })));
      const view = encodeExecutionDelimited(writer, r);
      written.push([view, want]);
    }
    // Views handed out earlier stay valid while later rows are written; each is its length, then the message.
    const varint = (n: number) => {
      const out: number[] = [];
      for (; n > 0x7f; n >>>= 7) out.push((n & 0x7f) | 0x80);
      out.push(n);
      return hex(Uint8Array.from(out));
    };
    for (const [view, want] of written) expect(hex(view)).toBe(varint(want.length / 2) + want);
  });

  it("holds each number as JSON.parse reads it, whatever its digits", () => {
    // numeric's text: up to 15 digits are read as an integer divided by a power of ten, more through Number().
    const digits = (min: number, max: number) => fc.string({ unit: fc.constantFrom(..."0123456789"), minLength: min, maxLength: max });
    const numeral = fc
      .tuple(fc.boolean(), fc.oneof(fc.constant("0"), fc.tuple(fc.constantFrom(..."123456789"), digits(0, 12)).map(([first, rest]) => first + rest)), fc.option(digits(1, 24)))
      .map(([negative, whole, fraction]) => `${negative ? "-" : ""}${whole}${fraction === null ? "" : "." + fraction}`);
    fc.assert(
      fc.property(fc.array(numeral, { minLength: 1, maxLength: 8 }), (numbers) => {
        const text = `{"n": [${numbers.join(", ")}], "x": ${numbers[0]}}`;
        expect(direct(text), text).toBe(true);
        expectSameBytes(plainRow(), text);
      }),
      runs(3_000),
    );
    for (const n of ["0.1", "-0.0", "999999999999999", "9999999999999999", "0.000000000000001", "123456789.123456", "1.0000000000000002", "19.99"]) {
      expectSameBytes(plainRow(), `{"n": ${n}}`);
    }
  });

  it("is the same for a text cut short read after a longer one (nothing of the longer one is taken for its rest)", () => {
    const long = jsonbText({ a: "x".repeat(5_000), b: [1, 2, 3] });
    for (const text of [long, '{"a": "x', '{"a": 1, ', '{"a": [1, ', '{"a": "y"}']) expectSameBytes(plainRow(), text);
    expect(direct(long)).toBe(true);
    expect(direct('{"a": "x')).toBe(false);
    expect(direct('{"a": [1, ')).toBe(false);
  });

  it("declines, having written nothing, where JSON.parse would order the keys otherwise than the text", () => {
    expect(direct('{"0": 1, "a": 2}')).toBe(false);
    expect(direct('{"a": {"7": 1}}')).toBe(false);
    expect(direct('{"__proto__": 1}')).toBe(false);
    // Bytes are still those of the general path (integer-like keys first).
    expectSameBytes(plainRow(), '{"a": 1, "10": 2, "9": 3}');
  });
});

describe("the jsonb text the database prints", () => {
  let knex: Knex;
  beforeAll(async () => {
    knex = await createTestDatabase();
  });
  afterAll(async () => {
    await knex.destroy();
  });

  /** PostgreSQL's text of each value, stored as jsonb, as the reads of executions get it. */
  async function printed(values: unknown[]): Promise<string[]> {
    const { rows } = await knex
      .raw<{ rows: { x: string }[] }>("SELECT x FROM jsonb_array_elements(?::jsonb) WITH ORDINALITY AS e(x, n) ORDER BY n", [JSON.stringify(values)])
      .options(JSONB_AS_TEXT);
    return rows.map((r) => r.x);
  }

  // jsonb holds neither lone surrogates nor U+0000.
  const storable = (value: unknown) => !/\\u0000|\\ud[89a-f]/i.test(JSON.stringify(value));

  it("is encoded with the bytes of the general path, and written directly when no key starts with a digit", async () => {
    const values = fc.sample(row, { numRuns: 400, seed: 42 }).map((r) => r.context).filter((c) => c !== null && storable(c));
    values.push(CONTEXT, { order: { items: [{ sku: "SKU-1", unitPrice: 19.99, tags: [] }] }, notes: 'a "quoted"\nline', city: "Berlin-Mitte, Straße 1", n: 1e21 });
    const texts = await printed(values);
    let directly = 0;
    for (const text of texts) {
      expectSameBytes(plainRow(), text);
      const object = text.startsWith("{");
      if (object && !/"(?:\d[^"]*|__proto__)": /.test(text)) {
        expect(direct(text), text).toBe(true);
        directly++;
      }
    }
    // Most generated contexts are objects without such keys: the direct way is the one tested here.
    expect(directly).toBeGreaterThan(values.length / 3);
  });

  it("is what a query with JSONB_AS_TEXT gets for jsonb, other types read as every query reads them", async () => {
    const { rows } = await knex
      .raw<{ rows: Record<string, unknown>[] }>(
        `SELECT j, j::text AS printed, NULL::jsonb AS none, timestamptz '2026-12-06 03:00:00.123456+00' AS at, 9007199254740993::int8 AS big, 7::int4 AS small
         FROM (SELECT '{"b": [1, 2.50], "a": "x"}'::jsonb AS j) AS t`,
      )
      .options(JSONB_AS_TEXT);
    const { rows: parsed } = await knex.raw<{ rows: Record<string, unknown>[] }>("SELECT '{\"a\": 1}'::jsonb AS j");
    const row = rows[0]!;
    expect(row.j).toBe('{"a": "x", "b": [1, 2.50]}');
    expect(row.j).toBe(row.printed);
    expect(row.none).toBeNull();
    // The connection's own parsers still apply (src/db/type-parsers.ts): timestamptz and int8 as text.
    expect(row.at).toMatch(/^2026-12-06[ T]03:00:00\.123456\+00/);
    expect(row.big).toBe("9007199254740993");
    expect(row.small).toBe(7);
    // And a query without it still gets jsonb parsed.
    expect(parsed[0]!.j).toEqual({ a: 1 });
  });
});
