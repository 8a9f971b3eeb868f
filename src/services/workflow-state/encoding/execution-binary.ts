// Over 400 lines: every field of a WorkflowExecution written from its row (encodeExecution), checked byte for byte against toBinary.
import { fromJson, toBinary, type JsonValue } from "@bufbuild/protobuf";
import {
  StepExecutionSchema,
  WorkflowDefinitionSchema,
  WorkflowStatus,
} from "../../../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { timestampPartsFromDb } from "../../../db/convert.js";
import { JsonText, jsonValueOf } from "../../../db/models/plain-rows.js";
import type { ExecutionRow } from "../../../db/models/workflow-execution.js";
import { etagOf } from "../../../etags/etag.js";
import { writeStructFromJsonText } from "./struct-from-json-text.js";
import { ExecutionWriter } from "./execution-writer.js";

// The protobuf binary encoding of a WorkflowExecution, written straight from a
// stored row: the hot path of StreamIncompleteWorkflows, and of the answers of
// GetWorkflowExecution and SaveWorkflowExecution to binary clients.
//
// The bytes are exactly those of toBinary(WorkflowExecutionSchema,
// executionFromRow(row)) (test/workflow-state/execution-binary.test.ts checks
// that on generated rows): fields in field-number order, zero scalars left out,
// map entries and Struct fields in the order of the row's JSON objects. What
// the general path spends most of a row's time on is skipped: building the
// messages, turning the context's JsonObject into Struct and Value messages,
// and writing all of them reflectively; a context read as its jsonb text
// (JsonText) is not even parsed (struct-from-json-text.ts). Definitions and
// step records that are not in the canonical JSON form the server stores
// still go through @bufbuild/protobuf's fromJson and toBinary.

/**
 * fromJson's nesting limit (its default recursionLimit, counting the message
 * itself): the general path reads step outputs with fromJson, so a value nested
 * deeper fails there, and fails here too. The contract allows 32 levels.
 */
const RECURSION_LIMIT = 100;

// Tags (field number << 3 | wire type) of the fields written here; all fit one byte.
const VARINT = 0;
const BIT64 = 1;
const LEN = 2;
const tag = (field: number, wireType: number) => (field << 3) | wireType;

/**
 * Writes one execution as a length-delimited field value (its byte length,
 * then the WorkflowExecution message), without the field's tag, and returns
 * those bytes. The writer is empty again afterwards.
 */
export function encodeExecutionDelimited(w: ExecutionWriter, row: ExecutionRow): Uint8Array {
  try {
    const mark = w.begin();
    writeExecution(w, row);
    w.end(mark);
  } catch (err) {
    w.discard();
    throw err;
  }
  return w.finish();
}

/** The WorkflowExecution message of a row, as its bytes (see executionFromRow for the mapping). */
export function encodeExecution(row: ExecutionRow): Uint8Array {
  const w = new ExecutionWriter();
  writeExecution(w, row);
  return w.finish();
}

function writeExecution(w: ExecutionWriter, row: ExecutionRow): void {
  writeString(w, 1, row.execution_id);
  writeString(w, 2, row.workflow_name);
  const status = WorkflowStatus[row.status as keyof typeof WorkflowStatus] as WorkflowStatus | undefined;
  if (typeof status === "number" && status !== WorkflowStatus.UNSPECIFIED) {
    w.byte(tag(3, VARINT));
    w.uint32(status);
  }
  if (row.definition !== null && row.definition !== undefined) {
    if (isCanonicalDefinition(row.definition)) {
      const mark = w.open(tag(4, LEN));
      writeCanonicalDefinition(w, row.definition);
      w.end(mark);
    } else {
      w.byte(tag(4, LEN));
      w.bytes(toBinary(WorkflowDefinitionSchema, fromJson(WorkflowDefinitionSchema, row.definition as JsonValue)));
    }
  }
  writeContext(w, row.context);
  for (const step of row.step_executions) {
    const mark = w.open(tag(6, LEN));
    writeStepExecution(w, step);
    w.end(mark);
  }
  const outputs = row.step_outputs;
  for (const stepId of Object.keys(outputs)) {
    const entry = w.open(tag(7, LEN));
    w.byte(tag(1, LEN));
    w.string(stepId);
    const value = w.open(tag(2, LEN));
    // The message counts as the first level of fromJson(ValueSchema, value).
    writeValue(w, outputs[stepId], 2);
    w.end(value);
    w.end(entry);
  }
  writeString(w, 8, row.error_message);
  writeTimestampFromDb(w, 9, row.started_at);
  if (row.completed_at !== null) writeTimestampFromDb(w, 10, row.completed_at);
  writeString(w, 11, row.initiated_by);
  const labels = row.labels;
  for (const key of Object.keys(labels)) {
    const entry = w.open(tag(12, LEN));
    w.byte(tag(1, LEN));
    w.string(key);
    w.byte(tag(2, LEN));
    w.string(String(labels[key]));
    w.end(entry);
  }
  writeString(w, 13, etagOf(row.version));
  writeTimestampFromDb(w, 14, row.create_time);
  writeTimestampFromDb(w, 15, row.update_time);
  // Lease lease = 16, while the execution has one (as leaseFromRow); its tag
  // takes two bytes.
  if (row.lease_token !== null && row.lease_token !== undefined) {
    w.uint32(tag(16, LEN));
    const mark = w.begin();
    writeString(w, 1, row.lease_owner);
    const token = BigInt(row.lease_token);
    if (token !== 0n) {
      w.byte(tag(2, VARINT));
      w.bigint64(token);
    }
    writeTimestampFromDb(w, 3, row.lease_expire_time!);
    w.end(mark);
  }
  // optional bool legal_hold = 17, written only while held (as executionFromRow
  // sets it); its tag takes two bytes.
  if (row.legal_hold === true) {
    w.uint32(tag(17, VARINT));
    w.byte(1);
  }
}

/**
 * The context (field 5): from its jsonb text where struct-from-json-text.ts
 * can, else from the parsed value. A jsonb `null` is no context, as when the
 * column is read as jsonb.
 */
function writeContext(w: ExecutionWriter, stored: ExecutionRow["context"] | undefined): void {
  const context = stored instanceof JsonText && !stored.text.startsWith("{") ? stored.value() : stored;
  if (context === null || context === undefined) return;
  const mark = w.open(tag(5, LEN));
  if (!(context instanceof JsonText && writeStructFromJsonText(w, context.text))) {
    const value = jsonValueOf(context);
    // A Struct field holds a JsonObject; anything else is written as an empty Struct.
    if (isObject(value)) writeStructFields(w, value, 0);
  }
  w.end(mark);
}

/** A proto3 string field: left out when empty (or unset). */
function writeString(w: ExecutionWriter, field: number, value: string | null | undefined): void {
  if (value === "" || value === null || value === undefined) return;
  w.byte(tag(field, LEN));
  w.string(String(value));
}

/** A google.protobuf.Timestamp field; zero seconds and nanos are left out. */
function writeTimestamp(w: ExecutionWriter, field: number, seconds: number, nanos: number): void {
  const mark = w.open(tag(field, LEN));
  if (seconds !== 0) {
    w.byte(tag(1, VARINT));
    w.int64(seconds);
  }
  if (nanos !== 0) {
    w.byte(tag(2, VARINT));
    w.uint32(nanos);
  }
  w.end(mark);
}

/** A google.protobuf.Timestamp field from timestamptz text. */
function writeTimestampFromDb(w: ExecutionWriter, field: number, text: string): void {
  const { seconds, nanos } = timestampPartsFromDb(text);
  writeTimestamp(w, field, seconds, nanos);
}

/**
 * The fields of a google.protobuf.Struct (map<string, Value> fields = 1) from
 * a JSON object. `depth` > 0 checks fromJson's nesting limit (step outputs);
 * 0 does not (the context, which is converted without a limit).
 */
function writeStructFields(w: ExecutionWriter, object: Record<string, unknown>, depth: number): void {
  const keys = Object.keys(object);
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!;
    const entry = w.open(tag(1, LEN));
    w.byte(tag(1, LEN));
    w.string(key);
    const value = w.open(tag(2, LEN));
    writeValue(w, object[key], depth === 0 ? 0 : depth + 1);
    w.end(value);
    w.end(entry);
  }
}

/**
 * The fields of a google.protobuf.Value from a JSON value: the one member of
 * its `kind` oneof (null_value = 1, number_value = 2, string_value = 3,
 * bool_value = 4, struct_value = 5, list_value = 6), written even when zero.
 */
function writeValue(w: ExecutionWriter, value: unknown, depth: number): void {
  if (depth > RECURSION_LIMIT) {
    throw new Error(`cannot decode google.protobuf.Value from JSON: maximum recursion depth of ${RECURSION_LIMIT} reached`);
  }
  switch (typeof value) {
    case "string":
      w.byte(tag(3, LEN));
      w.string(value);
      return;
    case "number":
      w.byte(tag(2, BIT64));
      w.double(value);
      return;
    case "boolean":
      w.byte(tag(4, VARINT));
      w.byte(value ? 1 : 0);
      return;
    case "object":
      if (value === null) {
        w.byte(tag(1, VARINT));
        w.byte(0); // NULL_VALUE
      } else if (Array.isArray(value)) {
        const list = w.open(tag(6, LEN));
        const next = depth === 0 ? 0 : depth + 1;
        for (let i = 0; i < value.length; i++) {
          const item = w.open(tag(1, LEN));
          writeValue(w, value[i], next);
          w.end(item);
        }
        w.end(list);
      } else {
        const struct = w.open(tag(5, LEN));
        writeStructFields(w, value as Record<string, unknown>, depth);
        w.end(struct);
      }
      return;
  }
  // Not a JSON value (parsed JSON never holds one): the general path writes an
  // empty Value in a Struct, and fromJson rejects it in a step output.
  if (depth !== 0) throw new Error(`cannot decode message google.protobuf.Value from JSON ${String(value)}`);
}

// StepExecution in the JSON form executionToColumns stores (proto field
// names, default values left out): written directly. Any other form (JSON
// names, nulls, numbers as strings, unknown keys...) goes through fromJson,
// which accepts or rejects it exactly as the general path does.

/** WorkflowStatus by its JSON name ("WORKFLOW_STATUS_RUNNING"). */
const STATUS_BY_JSON_NAME: ReadonlyMap<string, number> = new Map(
  StepExecutionSchema.field.status.enum!.values.map((v) => [v.name, v.number]),
);

/** The RFC 3339 form fromJson accepts for a Timestamp, restricted to UTC ("Z"), as toJson writes it. */
const RFC3339_UTC = /^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?Z$/;
const TIMESTAMP_MS_MIN = Date.parse("0001-01-01T00:00:00Z");
const TIMESTAMP_MS_MAX = Date.parse("9999-12-31T23:59:59Z");

function writeStepExecution(w: ExecutionWriter, step: unknown): void {
  if (!writeCanonicalStepExecution(w, step)) {
    w.raw(toBinary(StepExecutionSchema, fromJson(StepExecutionSchema, step as JsonValue)));
  }
}

/**
 * Writes a step record in canonical form and returns true; returns false,
 * having written nothing, for any other form.
 */
function writeCanonicalStepExecution(w: ExecutionWriter, step: unknown): boolean {
  if (!isObject(step)) return false;
  let stepId = "";
  let status = 0;
  let agentKey = "";
  let attempt = 0;
  let started: [number, number] | undefined;
  let completed: [number, number] | undefined;
  let errorMessage = "";
  for (const key of Object.keys(step)) {
    const value = step[key];
    switch (key) {
      case "step_id":
        if (!isWellFormedString(value)) return false;
        stepId = value;
        break;
      case "status": {
        const number = typeof value === "string" ? STATUS_BY_JSON_NAME.get(value) : undefined;
        if (number === undefined) return false;
        status = number;
        break;
      }
      case "agent_key":
        if (!isWellFormedString(value)) return false;
        agentKey = value;
        break;
      case "attempt":
        if (!isUint31(value)) return false;
        attempt = value;
        break;
      case "started_at":
        started = rfc3339Parts(value);
        if (started === undefined) return false;
        break;
      case "completed_at":
        completed = rfc3339Parts(value);
        if (completed === undefined) return false;
        break;
      case "error_message":
        if (!isWellFormedString(value)) return false;
        errorMessage = value;
        break;
      default:
        return false;
    }
  }
  writeString(w, 1, stepId);
  if (status !== 0) {
    w.byte(tag(2, VARINT));
    w.uint32(status);
  }
  writeString(w, 3, agentKey);
  if (attempt !== 0) {
    w.byte(tag(4, VARINT));
    w.uint32(attempt);
  }
  if (started !== undefined) writeTimestamp(w, 5, started[0], started[1]);
  if (completed !== undefined) writeTimestamp(w, 6, completed[0], completed[1]);
  writeString(w, 7, errorMessage);
  return true;
}

// WorkflowDefinition in the JSON form executionToColumns stores (proto field
// names, default values left out, parameters nested no deeper than the
// contract allows): written directly, as for step records. Any other form goes
// through fromJson and toBinary, which accept or reject it exactly as the
// general path does. The check runs first and writes nothing, so that a
// definition is written one way or the other, never half of each.

type JsonObject = Record<string, unknown>;

/** Parameters nested deeper than this (far beyond the contract's 32 levels) take the general path, which owns fromJson's limit. */
const DIRECT_PARAMETERS_DEPTH = 64;

/** A check of one field's value in the canonical form. */
type FieldCheck = (value: unknown) => boolean;

const isDuration: FieldCheck = (value) => durationParts(value) !== undefined;

// The fields of each message the canonical form may hold, each with its check.

const RETRY_POLICY_FIELDS: ReadonlyMap<string, FieldCheck> = new Map<string, FieldCheck>([
  ["max_attempts", isUint31],
  ["initial_backoff", isDuration],
  ["max_backoff", isDuration],
  // -0: protobuf-es writes it (not zero to it), rare enough for the general path.
  ["backoff_multiplier", (value) => typeof value === "number" && Number.isFinite(value) && !Object.is(value, -0)],
]);

const STEP_FIELDS: ReadonlyMap<string, FieldCheck> = new Map<string, FieldCheck>([
  ["step_id", isWellFormedString],
  ["name", isWellFormedString],
  ["required_capability", isWellFormedString],
  ["task_type", isWellFormedString],
  ["depends_on", (value) => Array.isArray(value) && value.every(isWellFormedString)],
  ["parameters", (value) => isObject(value) && nestedWithin(value, DIRECT_PARAMETERS_DEPTH)],
  ["timeout", isDuration],
  ["retry_policy", (value) => hasOnlyFields(value, RETRY_POLICY_FIELDS)],
]);

const DEFINITION_FIELDS: ReadonlyMap<string, FieldCheck> = new Map<string, FieldCheck>([
  ["name", isWellFormedString],
  ["version", isWellFormedString],
  ["steps", (value) => Array.isArray(value) && value.every((step) => hasOnlyFields(step, STEP_FIELDS))],
]);

function isCanonicalDefinition(definition: unknown): definition is JsonObject {
  return hasOnlyFields(definition, DEFINITION_FIELDS);
}

/** Whether `value` is an object whose every key is one of `fields` and passes that field's check. */
function hasOnlyFields(value: unknown, fields: ReadonlyMap<string, FieldCheck>): value is JsonObject {
  if (!isObject(value)) return false;
  for (const key of Object.keys(value)) {
    const check = fields.get(key);
    if (check === undefined || !check(value[key])) return false;
  }
  return true;
}

/** Writes a definition isCanonicalDefinition accepted, fields in field-number order. */
function writeCanonicalDefinition(w: ExecutionWriter, definition: JsonObject): void {
  writeString(w, 1, definition.name as string | undefined);
  writeString(w, 2, definition.version as string | undefined);
  for (const step of (definition.steps as JsonObject[] | undefined) ?? []) {
    const mark = w.open(tag(3, LEN));
    writeString(w, 1, step.step_id as string | undefined);
    writeString(w, 2, step.name as string | undefined);
    writeString(w, 3, step.required_capability as string | undefined);
    writeString(w, 4, step.task_type as string | undefined);
    // Repeated strings are written even when empty.
    for (const dependency of (step.depends_on as string[] | undefined) ?? []) {
      w.byte(tag(5, LEN));
      w.string(dependency);
    }
    if (step.parameters !== undefined) {
      const parameters = w.open(tag(6, LEN));
      writeStructFields(w, step.parameters as JsonObject, 0);
      w.end(parameters);
    }
    if (step.timeout !== undefined) writeDuration(w, 7, durationParts(step.timeout)!);
    const policy = step.retry_policy as JsonObject | undefined;
    if (policy !== undefined) {
      const mark = w.open(tag(8, LEN));
      const attempts = (policy.max_attempts as number | undefined) ?? 0;
      if (attempts !== 0) {
        w.byte(tag(1, VARINT));
        w.uint32(attempts);
      }
      if (policy.initial_backoff !== undefined) writeDuration(w, 2, durationParts(policy.initial_backoff)!);
      if (policy.max_backoff !== undefined) writeDuration(w, 3, durationParts(policy.max_backoff)!);
      const multiplier = (policy.backoff_multiplier as number | undefined) ?? 0;
      if (multiplier !== 0) {
        w.byte(tag(4, BIT64));
        w.double(multiplier);
      }
      w.end(mark);
    }
    w.end(mark);
  }
}

/** A google.protobuf.Duration field; zero seconds and nanos are left out (the wire shape of a Timestamp: seconds = 1, nanos = 2). */
function writeDuration(w: ExecutionWriter, field: number, [seconds, nanos]: [number, number]): void {
  writeTimestamp(w, field, seconds, nanos);
}

// The Duration JSON form toJson writes for a non-negative duration: seconds,
// then 0, 3, 6 or 9 fraction digits, then "s" (fromJson takes 1 to 9).
const DURATION = /^([0-9]{1,12})(?:\.([0-9]{1,9}))?s$/;
const DURATION_SECONDS_MAX = 315_576_000_000;

/** [seconds, nanos] of a non-negative Duration's JSON form, as fromJson reads it; undefined for any other form. */
function durationParts(value: unknown): [number, number] | undefined {
  if (typeof value !== "string") return undefined;
  const m = DURATION.exec(value);
  if (m === null) return undefined;
  const seconds = Number(m[1]);
  if (seconds > DURATION_SECONDS_MAX) return undefined;
  return [seconds, m[2] === undefined ? 0 : Number(m[2].padEnd(9, "0"))];
}

/** Whether a JSON value nests objects and arrays at most `levels` deep. */
function nestedWithin(value: unknown, levels: number): boolean {
  if (value === null || typeof value !== "object") return true;
  if (levels === 0) return false;
  const children = Array.isArray(value) ? value : Object.values(value);
  return children.every((child) => nestedWithin(child, levels - 1));
}

/** [seconds, nanos] of a Timestamp's JSON form, computed as fromJson does; undefined for anything it would not accept as is. */
function rfc3339Parts(value: unknown): [number, number] | undefined {
  if (typeof value !== "string") return undefined;
  const m = RFC3339_UTC.exec(value);
  if (m === null) return undefined;
  const ms = Date.parse(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}Z`);
  if (Number.isNaN(ms) || ms < TIMESTAMP_MS_MIN || ms > TIMESTAMP_MS_MAX) return undefined;
  const frac = m[7];
  return [ms / 1000, frac === undefined ? 0 : Number(frac.padEnd(9, "0"))];
}

/** An int32 or uint32 field's value that is written as a varint below 2^31 (negative int32s take the general path). */
function isUint31(value: unknown): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= 0x7fff_ffff;
}

/** A string fromJson takes for a string field: it rejects lone surrogates ("invalid UTF8"). */
function isWellFormedString(value: unknown): value is string {
  return typeof value === "string" && (value as string & { isWellFormed(): boolean }).isWellFormed();
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}
