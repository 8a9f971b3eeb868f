import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import type { Duration, Struct, Timestamp, Value } from "@bufbuild/protobuf/wkt";
import type { FieldViolation } from "../errors/invalid-argument.js";
import { invalidArgument, MAX_LISTED } from "../errors/invalid-argument.js";
import { LONE_SURROGATE, TIMESTAMP_MAX_SECONDS, TIMESTAMP_MIN_SECONDS } from "../ranges.js";

// Field checks shared by every service's request validation. A validator
// collects the violations of a request, then throws one INVALID_ARGUMENT
// naming them, before anything touches the database. It stops collecting
// once it has one more than the error names (Violations.full): a request with
// a bad value in each of millions of entries costs no more than one with 21.

/** Largest nesting of Struct/ListValue accepted anywhere. */
export const MAX_STRUCT_DEPTH = 32;
const MAX_TASK_SECONDS = 365n * 24n * 3600n;

/**
 * Runs `checks` on a fresh Violations, then throws one INVALID_ARGUMENT naming
 * every violation found: the body of a request's validation.
 */
export function validateFields(checks: (v: Violations) => void): void {
  const v = new Violations();
  checks(v);
  v.throwIfAny();
}

/** Collects the violations of one request, up to one more than the error names. */
export class Violations {
  readonly list: FieldViolation[] = [];

  add(field: string, description: string): void {
    if (!this.full) this.list.push({ field, description });
  }

  /** Whether no further violation would change the answer: validators stop iterating entries then. */
  get full(): boolean {
    return this.list.length > MAX_LISTED;
  }

  /**
   * Checks each of `entries` with `check`, stopping once the answer is full,
   * and at `max` entries: more than `max` is itself a violation of `field`.
   */
  each<T>(field: string, entries: readonly T[], max: number, check: (entry: T, index: number) => void): void {
    if (entries.length > max) this.add(field, `must have at most ${max} entries, got ${entries.length}`);
    const n = Math.min(entries.length, max);
    for (let i = 0; i < n && !this.full; i++) check(entries[i]!, i);
  }

  /** Throws INVALID_ARGUMENT naming every violation, if there is any. */
  throwIfAny(): void {
    if (this.list.length > 0) throw invalidArgument(this.list);
  }

  /**
   * A string of `min`-`max` characters (Unicode code points) that PostgreSQL can
   * store: no NUL character, no lone surrogate.
   */
  string(field: string, value: string, min: number, max: number): void {
    const length = codePointLength(value, max);
    if (length < min || length > max) {
      this.add(field, min > 0 ? `must be ${min}-${max} characters, got ${length > max ? `more than ${max}` : length}` : `must be at most ${max} characters`);
    }
    this.text(field, value);
  }

  /** No NUL character and no lone surrogate, which PostgreSQL cannot store. */
  text(field: string, value: string): void {
    if (value.includes("\0")) this.add(field, "must not contain NUL characters");
    else if (LONE_SURROGATE.test(value)) this.add(field, "must be valid UTF-8");
  }

  /** An integer in [min, max]. */
  intRange(field: string, value: number | bigint, min: number, max: number): void {
    if (value < min || value > max) this.add(field, `must be from ${min} to ${max}, got ${value}`);
  }

  /** A timestamp within google.protobuf.Timestamp's range (years 1-9999). */
  timestamp(field: string, value: Timestamp | undefined): void {
    if (value === undefined) return;
    if (value.seconds < TIMESTAMP_MIN_SECONDS || value.seconds > TIMESTAMP_MAX_SECONDS || value.nanos < 0 || value.nanos > 999_999_999) {
      this.add(field, "must be a valid timestamp between 0001-01-01 and 9999-12-31");
    }
  }

  /** A non-negative, well-formed duration. */
  duration(field: string, value: Duration | undefined): void {
    if (value === undefined) return;
    const { seconds, nanos } = value;
    if (seconds < 0n || nanos < 0 || nanos > 999_999_999 || seconds > 315_576_000_000n) {
      this.add(field, "must be a non-negative duration of at most 10,000 years");
    }
  }

  /**
   * A task's or a routing's duration: non-negative and at most 365 days (unset
   * is 0). The bound keeps an agent's summed durations (int8 microseconds,
   * about 292,000 years) from overflowing for hundreds of thousands of
   * maximal tasks to come.
   */
  taskDuration(field: string, value: Duration | undefined): void {
    const before = this.list.length;
    this.duration(field, value);
    if (this.list.length > before || value === undefined) return;
    if (value.seconds > MAX_TASK_SECONDS || (value.seconds === MAX_TASK_SECONDS && value.nanos > 0)) {
      this.add(field, "must be at most 365 days");
    }
  }

  /** A finite number (NaN and infinities have no JSON form). */
  finite(field: string, value: number): void {
    if (!Number.isFinite(value)) this.add(field, "must be a finite number");
  }

  /** An enum value that the contract defines, other than the zero UNSPECIFIED. */
  enumValue(field: string, value: number, names: Record<number, string>): void {
    if (value === 0 || names[value] === undefined) {
      this.add(field, value === 0 ? "is required" : `unknown value ${value}`);
    }
  }

  /**
   * A Struct or Value tree: bounded nesting, storable strings and keys, finite
   * numbers, and every Value with a kind.
   */
  structTree(field: string, value: JsonObject | Value | undefined): void {
    if (value === undefined) return;
    const problem = isValueMessage(value) ? valueProblem(value, 1) : jsonProblem(value, 1);
    if (problem !== undefined) this.add(field, problem);
  }
}

// Counts code points up to a bound, so that a huge string costs no more than the bound.
function codePointLength(value: string, max: number): number {
  if (value.length <= max) {
    let n = 0;
    for (const _ of value) n++;
    return n;
  }
  // More than `max` UTF-16 units: count until past `max` code points.
  let n = 0;
  for (const _ of value) if (++n > max) return n;
  return n;
}

function isValueMessage(value: JsonObject | Value): value is Value {
  return (value as { $typeName?: unknown }).$typeName === "google.protobuf.Value";
}

// Generated code represents google.protobuf.Struct fields as plain JSON objects.
function jsonProblem(value: JsonValue, depth: number): string | undefined {
  if (depth > MAX_STRUCT_DEPTH) return `must not nest deeper than ${MAX_STRUCT_DEPTH} levels`;
  if (typeof value === "string") return stringProblem(value);
  if (typeof value === "number") return Number.isFinite(value) ? undefined : "numbers must be finite";
  if (value === null || typeof value === "boolean") return undefined;
  if (Array.isArray(value)) {
    for (const child of value) {
      const problem = jsonProblem(child, depth + 1);
      if (problem !== undefined) return problem;
    }
    return undefined;
  }
  for (const [key, child] of Object.entries(value)) {
    const problem = stringProblem(key) ?? jsonProblem(child, depth + 1);
    if (problem !== undefined) return problem;
  }
  return undefined;
}

function structProblem(struct: Struct, depth: number): string | undefined {
  if (depth > MAX_STRUCT_DEPTH) return `must not nest deeper than ${MAX_STRUCT_DEPTH} levels`;
  for (const [key, child] of Object.entries(struct.fields)) {
    const problem = stringProblem(key) ?? valueProblem(child, depth + 1);
    if (problem !== undefined) return problem;
  }
  return undefined;
}

function valueProblem(value: Value, depth: number): string | undefined {
  if (depth > MAX_STRUCT_DEPTH) return `must not nest deeper than ${MAX_STRUCT_DEPTH} levels`;
  const kind = value.kind;
  switch (kind.case) {
    case undefined:
      return "every Value must have a kind (null_value, number_value, ...)";
    case "numberValue":
      return Number.isFinite(kind.value) ? undefined : "numbers must be finite";
    case "stringValue":
      return stringProblem(kind.value);
    case "structValue":
      return structProblem(kind.value, depth);
    case "listValue":
      for (const child of kind.value.values) {
        const problem = valueProblem(child, depth + 1);
        if (problem !== undefined) return problem;
      }
      return undefined;
    default:
      return undefined;
  }
}

/** Whether PostgreSQL can take `value` as text: no NUL character, no lone surrogate. */
export function isStorableText(value: string): boolean {
  return stringProblem(value) === undefined;
}

function stringProblem(value: string): string | undefined {
  if (value.includes("\0")) return "strings must not contain NUL characters";
  if (LONE_SURROGATE.test(value)) return "strings must be valid UTF-8";
  return undefined;
}
