import { create, type DescField, type DescMessage, type JsonObject, type JsonValue, type Message, ScalarType } from "@bufbuild/protobuf";
import { type Value, ValueSchema } from "@bufbuild/protobuf/wkt";
import fc from "fast-check";

// Request arbitraries driven by the message descriptors, so that every field
// of every request message gets values: mostly plausible ones (a small pool of
// ids so that writes collide and update, times near now, defined enum values),
// and now and then hostile ones (NUL, lone surrogates, over-long strings,
// unknown enum numbers, out-of-range timestamps and durations, NaN, deep or
// poisoned Structs, large lists and maps).

/** fast-check parameters for every property: bounded, and reproducible with FC_SEED / FC_PATH. */
export function runParameters(numRuns: number): fc.Parameters<unknown> {
  const seed = process.env.FC_SEED === undefined ? undefined : Number(process.env.FC_SEED);
  return { numRuns, seed, path: process.env.FC_PATH, endOnFailure: true };
}

const HOSTILE_WEIGHT = 1;
const VALID_WEIGHT = 9;

/** Strings that PostgreSQL or UTF-8 cannot carry, or that exceed every limit. */
export const hostileString: fc.Arbitrary<string> = fc.oneof(
  { arbitrary: fc.constantFrom("\0", "a\0b", "\uD800", "x\uDFFFy", "\uDBFF\uDBFF", "\uFFFD", "", " ", "x".repeat(201), "é".repeat(101)), weight: 4 },
  { arbitrary: fc.string({ unit: "binary", maxLength: 40 }), weight: 3 },
  { arbitrary: fc.string({ unit: "binary-ascii", maxLength: 40 }), weight: 2 },
  { arbitrary: fc.integer({ min: 1_000, max: 12_000 }).map((n) => "z".repeat(n)), weight: 1 },
);

// Timestamps allowed only in some states; plausible requests leave them to the server.
const STATE_DEPENDENT = new Set(["completed_at", "opened_at", "reset_at"]);
const POOL = ["a", "b", "agent-1", "wf-1", "step-1"];
const now = Date.now();

function seconds(ms: number): bigint {
  return BigInt(Math.floor(ms / 1000));
}

const validTimestamp = fc
  .record({ offsetMs: fc.integer({ min: -3 * 86_400_000, max: 3 * 86_400_000 }), nanos: fc.integer({ min: 0, max: 999_999_999 }) })
  .map(({ offsetMs, nanos }) => ({ seconds: seconds(now + offsetMs), nanos }));
const hostileTimestamp = fc.oneof(
  fc.record({ seconds: fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), nanos: fc.integer() }),
  fc.record({ seconds: fc.constantFrom(-62_135_596_801n, 253_402_300_800n, 0n), nanos: fc.constantFrom(-1, 0, 1_000_000_000) }),
);
const validDuration = fc.record({ seconds: fc.bigInt({ min: 0n, max: 120n }), nanos: fc.integer({ min: 0, max: 999_999_999 }) });
const hostileDuration = fc.oneof(
  fc.record({ seconds: fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), nanos: fc.integer() }),
  fc.record({ seconds: fc.constantFrom(-1n, 31_536_001n, 315_576_000_001n), nanos: fc.constantFrom(0, -5, 1_000_000_000) }),
);

/** A JSON value nested exactly `depth` levels deep (objects and lists alternating). */
export function nested(depth: number): JsonValue {
  let v: JsonValue = "leaf";
  for (let i = 1; i < depth; i++) v = i % 2 === 0 ? [v] : { k: v };
  return v;
}

const validJson: fc.Arbitrary<JsonValue> = fc.letrec<{ v: JsonValue }>((tie) => ({
  v: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.constantFrom<JsonValue>(null, true, false, "x", 1, 2.5),
    fc.array(tie("v"), { maxLength: 3 }),
    fc.dictionary(fc.constantFrom("k", "n", "m"), tie("v"), { maxKeys: 3 }),
  ),
})).v;
const hostileJson: fc.Arbitrary<JsonValue> = fc.oneof(
  fc.integer({ min: 30, max: 36 }).map(nested),
  fc.integer({ min: 60, max: 200 }).map(nested),
  hostileString.map((s) => ({ [s]: s })),
  fc.constantFrom<JsonValue>(Number.NaN, Number.POSITIVE_INFINITY, { k: Number.NEGATIVE_INFINITY }),
);
const jsonObject = (h: boolean): fc.Arbitrary<JsonObject> =>
  mix(h, fc.dictionary(fc.constantFrom("k", "n"), validJson, { maxKeys: 3 }), hostileJson.map((v) => ({ root: v })));

/** A google.protobuf.Value message of a JSON value (numbers kept even when not finite). */
function valueOf(json: JsonValue): Value {
  if (json === null) return create(ValueSchema, { kind: { case: "nullValue", value: 0 } });
  if (typeof json === "number") return create(ValueSchema, { kind: { case: "numberValue", value: json } });
  if (typeof json === "string") return create(ValueSchema, { kind: { case: "stringValue", value: json } });
  if (typeof json === "boolean") return create(ValueSchema, { kind: { case: "boolValue", value: json } });
  if (Array.isArray(json)) return create(ValueSchema, { kind: { case: "listValue", value: { values: json.map(valueOf) } } });
  const fields: Record<string, Value> = {};
  for (const [k, v] of Object.entries(json)) fields[k] = valueOf(v);
  return create(ValueSchema, { kind: { case: "structValue", value: { fields } } });
}
const valueMessage = (h: boolean): fc.Arbitrary<Value> =>
  mix(h, validJson.map(valueOf), fc.oneof(hostileJson.map(valueOf), fc.constant(create(ValueSchema)) /* no kind */));

/** Mostly `valid`, sometimes `hostile`; only `valid` when the request is to be well-formed. */
function mix<T>(h: boolean, valid: fc.Arbitrary<T>, hostile: fc.Arbitrary<T>): fc.Arbitrary<T> {
  return h ? fc.oneof({ arbitrary: valid, weight: VALID_WEIGHT }, { arbitrary: hostile, weight: HOSTILE_WEIGHT }) : valid;
}

function stringFor(field: DescField, h: boolean): fc.Arbitrary<string> {
  switch (field.name) {
    case "decision_id":
      return mix(h, fc.oneof(fc.constant(""), fc.uuid()), hostileString);
    case "page_token":
    case "etag":
      return mix(h, fc.constant(""), fc.oneof(hostileString, fc.base64String({ maxLength: 60 })));
    default:
      return mix(h, fc.constantFrom(...POOL), hostileString);
  }
}

function scalar(field: DescField, type: ScalarType, h: boolean): fc.Arbitrary<unknown> {
  switch (type) {
    case ScalarType.STRING:
      return stringFor(field, h);
    case ScalarType.BOOL:
      return fc.boolean();
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      // backoff_multiplier must be 0 or at least 1; the other doubles accept (0, 1].
      return mix(h, field.name === "backoff_multiplier" ? fc.constantFrom(0, 1, 2.5) : fc.double({ min: 0.01, max: 1, noNaN: true }), fc.double());
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      // A save's fencing token, like its etag, is a condition: plausible saves are unconditional.
      if (field.name === "fencing_token" && field.parent.name === "SaveWorkflowExecutionRequest") {
        return mix(h, fc.constant(0n), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }));
      }
      return mix(h, fc.bigInt({ min: 0n, max: 10n }), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }));
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return mix(h, fc.bigInt({ min: 0n, max: 10n }), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }));
    case ScalarType.BYTES:
      return fc.uint8Array({ maxLength: 8 });
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return mix(h, fc.integer({ min: 0, max: 5 }), fc.integer({ min: 0, max: 2 ** 32 - 1 }));
    default:
      return mix(h, fc.integer({ min: 0, max: 5 }), fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }));
  }
}

function enumValue(numbers: readonly number[], h: boolean): fc.Arbitrary<number> {
  const defined = numbers.filter((n) => n !== 0);
  return mix(h, fc.constantFrom(...defined), fc.oneof(fc.constant(0), fc.integer({ min: -3, max: 40 }), fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 })));
}

function messageValue(desc: DescMessage, depth: number, h: boolean): fc.Arbitrary<unknown> {
  switch (desc.typeName) {
    case "google.protobuf.Timestamp":
      return mix(h, validTimestamp, hostileTimestamp);
    case "google.protobuf.Duration":
      return mix(h, validDuration, hostileDuration);
    case "google.protobuf.Struct":
      return jsonObject(h);
    case "google.protobuf.Value":
      return valueMessage(h);
    default:
      return messageInit(desc, h, depth + 1);
  }
}

function listSize(): { minLength: number; maxLength: number } {
  return { minLength: 0, maxLength: 3 };
}

function fieldValue(field: DescField, depth: number, h: boolean): fc.Arbitrary<unknown> {
  switch (field.fieldKind) {
    case "scalar":
      return scalar(field, field.scalar, h);
    case "enum":
      return enumValue(field.enum.values.map((v) => v.number), h);
    case "message":
      return messageValue(field.message, depth, h);
    case "list": {
      const item =
        field.listKind === "scalar"
          ? scalar(field, field.scalar, h)
          : field.listKind === "enum"
            ? enumValue(field.enum.values.map((v) => v.number), h)
            : messageValue(field.message, depth, h);
      // Now and then a list past the documented maximum of most fields (100).
      return mix(h, fc.array(item, listSize()), fc.array(item, { minLength: 101, maxLength: 105 }));
    }
    case "map": {
      const value =
        field.mapKind === "scalar"
          ? scalar(field, field.scalar, h)
          : field.mapKind === "enum"
            ? enumValue(field.enum.values.map((v) => v.number), h)
            : messageValue(field.message, depth, h);
      return fc.dictionary(mix(h, fc.constantFrom("k1", "k2", "team"), hostileString), value, { maxKeys: 3 });
    }
  }
}

/**
 * An init object for `desc` (pass it to create()); message fields are unset
 * now and then. With `h` false every value is plausible (the request may still
 * break a rule between fields); with `h` true any value may be hostile.
 */
export function messageInit(desc: DescMessage, h: boolean, depth = 0): fc.Arbitrary<Record<string, unknown>> {
  if (depth > 4) return fc.constant({});
  const entries: Record<string, fc.Arbitrary<unknown>> = {};
  for (const field of desc.fields) {
    const value = fieldValue(field, depth, h);
    if (!h && STATE_DEPENDENT.has(field.name)) continue; // the server fills them in
    const optional = field.fieldKind === "message" || (field.fieldKind === "scalar" && field.presence === 1 /* EXPLICIT */);
    // A request's top-level message (the execution, the breaker, the decision) is there when plausible.
    entries[field.localName] = optional && (h || depth > 0) ? fc.option(value, { nil: undefined, freq: 3 }) : value;
  }
  return fc.record(entries);
}

/** A request message of `desc`: plausible in about half the cases, possibly hostile in the others. */
export function requestMessage(desc: DescMessage): fc.Arbitrary<Message> {
  return fc
    .oneof(messageInit(desc, false), messageInit(desc, true))
    .map((init) => create(desc, init as never) as Message);
}
