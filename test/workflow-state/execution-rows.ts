import { create, toJson } from "@bufbuild/protobuf";
import fc from "fast-check";
import { StepExecutionSchema, WorkflowDefinitionSchema } from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import type { ExecutionRow } from "../../src/db/models/workflow-execution.js";

// Rows of workflow_executions as the drivers return them, of every shape the
// database can hold: the inputs of the execution encoding's contract tests
// (execution-binary.test.ts, execution-encoding.test.ts). Failures print
// fast-check's seed and path; rerun with FC_SEED=... FC_PATH=...

export const runs = (numRuns: number): fc.Parameters<unknown> => ({
  numRuns,
  seed: process.env.FC_SEED === undefined ? undefined : Number(process.env.FC_SEED),
  path: process.env.FC_PATH,
  endOnFailure: true,
});

// ---- arbitraries: rows as the drivers return them -------------------------

const text: fc.Arbitrary<string> = fc.oneof(
  { arbitrary: fc.constantFrom("", "a", "exec-0000001", "fulfil-order", "Musterstraße", "日本語", "😀", "\uD800", "x\uDFFFy", "\0"), weight: 4 },
  { arbitrary: fc.string({ unit: "binary", maxLength: 12 }), weight: 3 },
  { arbitrary: fc.string({ maxLength: 300 }), weight: 2 },
  // Lengths around the varint steps of a length prefix (128, 16,384 bytes).
  { arbitrary: fc.integer({ min: 40, max: 20_000 }).chain((n) => fc.constantFrom("a".repeat(n), "é".repeat(n), "€".repeat(n))), weight: 1 },
);

/** Object keys as JSON.parse makes them: array-index keys first, "__proto__" as an own key. */
const key: fc.Arbitrary<string> = fc.oneof(
  { arbitrary: fc.constantFrom("a", "b", "items", "0", "1", "10", "2", "4294967295", "-1", "01", "__proto__", "", "ключ", "k".repeat(200)), weight: 3 },
  { arbitrary: fc.string({ maxLength: 8 }), weight: 1 },
);

/** Numbers JSON.parse gives: a numeric too large for a double (jsonb keeps it) is Infinity. */
const jsonNumber: fc.Arbitrary<number> = fc.oneof(
  fc.constantFrom(0, -0, 1, -1, 0.1, 19.99, 1e308, -1e308, 5e-324, 2 ** 53, Infinity, -Infinity),
  fc.double({ noNaN: true }),
  fc.integer(),
);

const objectOf = (entries: fc.Arbitrary<[string, unknown][]>) => entries.map((e) => Object.fromEntries(e) as Record<string, unknown>);

const jsonOf = (numbers: fc.Arbitrary<number>): fc.Arbitrary<unknown> =>
  fc.letrec<{ value: unknown }>((tie) => ({
    value: fc.oneof(
      { depthSize: "small", withCrossShrink: true },
      fc.constantFrom(null, true, false),
      numbers,
      text,
      fc.array(tie("value"), { maxLength: 4 }),
      objectOf(fc.array(fc.tuple(key, tie("value")), { maxLength: 4 })),
    ),
  })).value;
const json = jsonOf(jsonNumber);
/** What toJson can write (a definition's parameters are written by toJson). */
const finiteJson = jsonOf(jsonNumber.filter(Number.isFinite));

/** `depth` levels of Values: lists and objects alternating around a leaf. */
export function nested(depth: number): unknown {
  let v: unknown = "leaf";
  for (let i = 1; i < depth; i++) v = i % 2 === 0 ? [v] : { k: v };
  return v;
}

// fromJson's recursion limit, which the general path applies to step outputs
// and not to the context, lies around 99 levels: both sides of it.
const deep = fc.integer({ min: 95, max: 103 }).map(nested);

const context = fc.oneof(
  { arbitrary: fc.constant(null), weight: 2 },
  { arbitrary: objectOf(fc.array(fc.tuple(key, json), { maxLength: 6 })), weight: 6 },
  { arbitrary: deep.map((v) => ({ deep: v })), weight: 1 },
  // Not an object: never written by the API, converted as an empty Struct.
  { arbitrary: fc.constantFrom<unknown>([], [1], "text", 5), weight: 1 },
);

const stepOutputs = objectOf(fc.array(fc.tuple(key, fc.oneof({ arbitrary: json, weight: 5 }, { arbitrary: deep, weight: 1 })), { maxLength: 4 }));

const labels = objectOf(fc.array(fc.tuple(key, text), { maxLength: 4 })) as fc.Arbitrary<Record<string, string>>;

/** A Timestamp in the range of the contract, with any nanos (toJson writes 0, 3, 6 or 9 digits). */
const timestamp = fc.record({
  seconds: fc.oneof(fc.bigInt({ min: -62_135_596_800n, max: 253_402_300_799n }), fc.constantFrom(0n, -1n, 1n, 4_294_967_295n, 4_294_967_296n)),
  nanos: fc.oneof(fc.integer({ min: 0, max: 999_999_999 }), fc.constantFrom(0, 1_000, 500_000_000)),
});

/** A step record as executionToColumns stores it (proto field names, defaults left out). */
const canonicalStep = fc
  .record(
    {
      stepId: text,
      status: fc.integer({ min: 0, max: 6 }),
      agentKey: text,
      attempt: fc.oneof(fc.integer({ min: 0, max: 1000 }), fc.constant(2 ** 31 - 1)),
      startedAt: timestamp,
      completedAt: timestamp,
      errorMessage: text,
    },
    { requiredKeys: [] },
  )
  .map((init) => toJson(StepExecutionSchema, create(StepExecutionSchema, init), { useProtoFieldName: true }) as Record<string, unknown>);

/** Other JSON forms fromJson accepts, or rejects: each takes (or fails on) the general path. */
const otherStep = fc.oneof(
  canonicalStep.map((s) => ({ ...s, attempt: String(s.attempt ?? 3) })),
  canonicalStep.map((s) => ({ ...s, status: 2 })),
  canonicalStep.map(({ step_id, ...s }) => ({ ...s, stepId: step_id ?? "x" })),
  canonicalStep.map((s) => ({ ...s, started_at: "2026-11-26T19:33:29.5+01:00" })),
  canonicalStep.map((s) => ({ ...s, started_at: "2026-02-30T00:00:00Z" })),
  canonicalStep.map((s) => ({ ...s, completed_at: "0000-01-01T00:00:00Z" })),
  canonicalStep.map((s) => ({ ...s, error_message: null })),
  canonicalStep.map((s) => ({ ...s, attempt: -1 })),
  canonicalStep.map((s) => ({ ...s, attempt: 1.5 })),
  canonicalStep.map((s) => ({ ...s, status: "RUNNING" })),
  canonicalStep.map((s) => ({ ...s, unknown_field: 1 })),
  fc.constantFrom<unknown>(null, "step", [], 7),
);

const definition = fc.oneof(
  { arbitrary: fc.constant(null), weight: 3 },
  {
    arbitrary: fc
      .record({
        name: text,
        version: fc.constantFrom("", "1.4.0"),
        steps: fc.array(
          fc.record({
            stepId: text,
            name: text,
            requiredCapability: fc.constantFrom("", "erp-read"),
            taskType: text,
            dependsOn: fc.array(text, { maxLength: 2 }),
            parameters: objectOf(fc.array(fc.tuple(key, finiteJson), { maxLength: 3 })),
            timeout: fc.constantFrom(undefined, { seconds: 0n, nanos: 0 }, { seconds: 30n, nanos: 0 }, { seconds: 1n, nanos: 500_000_000 }, { seconds: 315_576_000_000n, nanos: 1 }),
            retryPolicy: fc.constantFrom(
              undefined,
              {},
              { maxAttempts: 3, backoffMultiplier: 2 },
              { maxAttempts: 2_147_483_647, initialBackoff: { seconds: 1n }, maxBackoff: { seconds: 10n, nanos: 250_000 }, backoffMultiplier: 1.5 },
              { backoffMultiplier: -0.25 },
            ),
          }),
          { maxLength: 3 },
        ),
      })
      .map((init) => toJson(WorkflowDefinitionSchema, create(WorkflowDefinitionSchema, init as never), { useProtoFieldName: true }) as object),
    weight: 2,
  },
  {
    // Forms toJson does not write: fromJson takes some (JSON names, nulls, other
    // number and duration forms) and rejects others, and the stream must do the same.
    arbitrary: fc.constantFrom<unknown>(
      { name: "w", unknown: 1 },
      { steps: "x" },
      {},
      { name: null },
      { steps: [{ stepId: "camel" }] },
      { steps: [null] },
      { steps: [{ step_id: "a", depends_on: ["b", null] }] },
      { steps: [{ step_id: "a", parameters: null }] },
      { steps: [{ step_id: "a", parameters: [1] }] },
      { steps: [{ step_id: "a", timeout: "1.5s" }] },
      { steps: [{ step_id: "a", timeout: "-1s" }] },
      { steps: [{ step_id: "a", timeout: "1.0000000001s" }] },
      { steps: [{ step_id: "a", timeout: "315576000001s" }] },
      { steps: [{ step_id: "a", timeout: "30" }] },
      { steps: [{ step_id: "a", timeout: 30 }] },
      { steps: [{ step_id: "a", retry_policy: { max_attempts: "3" } }] },
      { steps: [{ step_id: "a", retry_policy: { max_attempts: -1 } }] },
      { steps: [{ step_id: "a", retry_policy: { max_attempts: 2_147_483_648 } }] },
      { steps: [{ step_id: "a", retry_policy: { max_attempts: 1.5 } }] },
      { steps: [{ step_id: "a", retry_policy: { backoff_multiplier: "NaN" } }] },
      { steps: [{ step_id: "a", retry_policy: { backoff_multiplier: -0 } }] },
      { steps: [{ step_id: "a", retry_policy: { maxAttempts: 3 } }] },
      { steps: [{ step_id: "\ud800" }] },
      { name: "\udfff" },
      { version: 1 },
      ...[63, 64, 65, 97, 98, 99, 100].map((depth) => ({ steps: [{ step_id: "deep", parameters: { p: nested(depth) } }] })),
    ),
    weight: 2,
  },
);

/** PostgreSQL's text of a timestamptz in a session time zone at `offsetSeconds` from UTC. */
function pgTimestamp(utcMicros: bigint, offsetSeconds: number, fractionDigits: number, separator: string): string {
  const localMs = Number(utcMicros / 1000n) + offsetSeconds * 1000;
  const iso = new Date(Math.floor(localMs / 1000) * 1000).toISOString(); // +YYYYYY or YYYY
  const micros = Number(((utcMicros % 1_000_000n) + 1_000_000n) % 1_000_000n);
  const frac = fractionDigits === 0 ? "" : `.${String(micros).padStart(6, "0").slice(0, fractionDigits)}`;
  const sign = offsetSeconds < 0 ? "-" : "+";
  const abs = Math.abs(offsetSeconds);
  const [h, m, s] = [Math.floor(abs / 3600), Math.floor((abs % 3600) / 60), abs % 60].map((n) => String(n).padStart(2, "0"));
  const offset = abs % 60 !== 0 ? `${sign}${h}:${m}:${s}` : abs % 3600 !== 0 ? `${sign}${h}:${m}` : `${sign}${h}`;
  return `${iso.slice(0, 10)}${separator}${iso.slice(11, 19)}${frac}${offset}`;
}

export const dbTimestamp: fc.Arbitrary<string> = fc.oneof(
  {
    arbitrary: fc
      .record({
        // Years 1 to 9999, as PostgreSQL prints them (4 digits, zero-padded).
        micros: fc.bigInt({ min: -62_135_596_800_000_000n + 86_400_000_000n, max: 253_402_300_799_000_000n - 86_400_000_000n }),
        offset: fc.constantFrom(0, 0, 0, 3600, -28_800, 19_800, 20_700, -12_600, 3208, -17_762),
        digits: fc.integer({ min: 0, max: 6 }),
        separator: fc.constantFrom(" ", " ", "T"),
      })
      .map(({ micros, offset, digits, separator }) => pgTimestamp(micros, offset, digits, separator)),
    weight: 8,
  },
  {
    arbitrary: fc.constantFrom(
      "2026-11-26 19:33:29.692123+00",
      "2026-11-26 19:33:29+05:30",
      "2026-11-26 19:33:29.1-08",
      "2026-11-26 19:33:29+0530",
      "2026-11-26 19:33:29.692123+00:53:28",
      "0001-01-01 00:00:00+00",
      "0099-12-31 23:59:59.999999+00",
      "1969-12-31 23:59:59.999999+00",
      "1970-01-01 00:00:00+00",
      "10000-01-01 00:00:00+00",
      "2026-11-26 19:33:29.1234567+00",
      "2026-11-26 19:33:29.+00",
      "2026-11-26 19:33:29",
      "0044-03-15 12:00:00+00 BC",
      "infinity",
    ),
    weight: 2,
  },
);

/** A row's lease columns: all three set (any int64 token, any owner) or all null. */
const lease = fc.option(
  fc.record({
    lease_owner: text,
    lease_token: fc.oneof(fc.constantFrom("0", "1", "1000000000000", "4294967295", "4294967296", "9007199254740993", "-1"), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map(String)),
    lease_expire_time: dbTimestamp,
  }),
  { nil: null },
).map((l) => l ?? { lease_owner: null, lease_token: null, lease_expire_time: null });

export const row: fc.Arbitrary<ExecutionRow> = fc.tuple(fc.record({
  tenant_id: fc.constant("00000000-0000-4000-8000-000000000000"),
  execution_id: text,
  workflow_name: text,
  status: fc.constantFrom("PENDING", "RUNNING", "BLOCKED", "COMPLETED", "FAILED", "CANCELLED"),
  definition: definition as fc.Arbitrary<object | null>,
  context: context as fc.Arbitrary<object | null>,
  step_executions: fc.array(fc.oneof({ arbitrary: canonicalStep, weight: 4 }, { arbitrary: otherStep, weight: 1 }), { maxLength: 4 }) as fc.Arbitrary<object[]>,
  step_outputs: stepOutputs,
  error_message: text,
  started_at: dbTimestamp,
  completed_at: fc.option(dbTimestamp, { nil: null }),
  initiated_by: text,
  labels,
  version: fc.oneof(fc.constantFrom("1", "2", "9007199254740993"), fc.bigInt({ min: 1n, max: 2n ** 63n - 1n }).map(String)),
  create_time: dbTimestamp,
  update_time: dbTimestamp,
  legal_hold: fc.boolean(),
  stored_bytes: fc.constant("0"),
}), lease).map(([r, l]) => ({ ...r, ...l }));

/** A row that the general path accepts, in the form the server writes. */
export function plainRow(overrides: Partial<ExecutionRow> = {}): ExecutionRow {
  return {
    tenant_id: "00000000-0000-4000-8000-000000000000",
    execution_id: "exec-1",
    workflow_name: "fulfil-order",
    status: "RUNNING",
    definition: null,
    context: { order: { items: [{ sku: "SKU-1", quantity: 2 }] } },
    step_executions: [{ step_id: "fetch", status: "WORKFLOW_STATUS_COMPLETED", agent_key: "erp-agent", attempt: 1 }],
    step_outputs: {},
    error_message: "",
    started_at: "2026-01-01 00:00:00.0005+00",
    completed_at: null,
    initiated_by: "service:bench",
    labels: { team: "fulfilment" },
    version: "1",
    create_time: "2026-11-26 19:33:29.692123+00",
    update_time: "2026-11-26 19:33:29.692123+00",
    legal_hold: false,
    stored_bytes: "0",
    lease_owner: null,
    lease_token: null,
    lease_expire_time: null,
    ...overrides,
  };
}


/**
 * JSON text as PostgreSQL prints a jsonb value: keys shortest first (then by
 * their bytes; jsonb keeps each key once), ", " and ": " between members,
 * numbers without an exponent (numeric's text). A number too large for a
 * double prints as its digits, which JSON.parse reads as Infinity again.
 */
export function jsonbText(value: unknown): string {
  if (typeof value === "number") return numericText(value);
  if (value === null || typeof value !== "object") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(jsonbText).join(", ")}]`;
  const object = value as Record<string, unknown>;
  const keys = Object.keys(object).sort((a, b) => Buffer.byteLength(a) - Buffer.byteLength(b) || Buffer.compare(Buffer.from(a), Buffer.from(b)));
  return `{${keys.map((k) => `${JSON.stringify(k)}: ${jsonbText(object[k])}`).join(", ")}}`;
}

/** numeric's text of a JSON number: plain digits, never an exponent. */
function numericText(n: number): string {
  if (n === Infinity) return "1" + "0".repeat(400);
  if (n === -Infinity) return "-1" + "0".repeat(400);
  const json = JSON.stringify(n); // "0" for -0, as numeric has no -0
  const m = /^(-?)(\d+)(?:\.(\d+))?e([+-]\d+)$/.exec(json);
  if (m === null) return json;
  const [, sign, whole, fraction = "", exp] = m;
  const digits = whole! + fraction;
  const point = whole!.length + Number(exp);
  if (point <= 0) return `${sign}0.${"0".repeat(-point)}${digits}`;
  if (point >= digits.length) return sign + digits + "0".repeat(point - digits.length);
  return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`;
}
