import type { Model, ModelObject } from "objection";

// Plain rows: what raw SQL and Knex builders read from a model's table, typed
// by the model (its data properties, none of Model's methods), with the JSON
// attributes handled exactly as Objection handles them for model instances.
// The hot paths read plain rows: building a model (the query builder and
// fromDatabaseJson) is a visible part of a call's CPU when the row is only
// encoded into the answer.

/** One row of a model's table as a plain object: the model's columns, as the driver returns them. */
export type RowOf<M extends Model> = ModelObject<M>;

/** What these helpers read of a model class (Objection's ModelClass<M> does not let M be inferred). */
export interface ModelOf<M extends Model> {
  new (): M;
  tableName: string;
  jsonAttributes: string[];
}

/**
 * What Objection's fromDatabaseJson does to a model's JSON attributes, for a
 * plain row read with raw SQL or Knex: a value the driver returned as a
 * string (a top-level JSON string, as conditional saves stored before
 * 2026-12-05) is parsed when it is JSON text, and kept as the string when not.
 * The drivers parse JSONB, so this is a type check per column. Returns `row`,
 * changed in place.
 */
export function parseJsonAttributes<M extends Model, Row extends object>(model: ModelOf<M>, row: Row): Row {
  const values = row as Record<string, unknown>;
  for (const column of model.jsonAttributes) {
    const value = values[column];
    if (typeof value === "string") values[column] = jsonAttributeValue(value);
  }
  return row;
}

/**
 * parseJsonAttributes for a row read with JSONB_AS_TEXT (../type-parsers.ts),
 * whose JSON attributes are PostgreSQL's text of each jsonb value: the
 * columns in `keep` become a JsonText each (parsed only if read), the others
 * what the driver's parsing and parseJsonAttributes would have made of them.
 * Returns `row`, changed in place.
 */
export function jsonAttributesFromText<M extends Model, Row extends object>(model: ModelOf<M>, row: Row, keep: readonly string[]): Row {
  const values = row as Record<string, unknown>;
  for (const column of model.jsonAttributes) {
    const text = values[column];
    if (typeof text !== "string") continue; // SQL NULL
    values[column] = keep.includes(column) ? new JsonText(text) : jsonbTextValue(text);
  }
  return row;
}

/** A JSON attribute's string as fromDatabaseJson leaves it: parsed when it is JSON text, else the string itself. */
function jsonAttributeValue(value: string): unknown {
  try {
    return JSON.parse(value);
  } catch {
    // Not JSON text: kept as the string, as Objection does.
    return value;
  }
}

/**
 * A JSON attribute read as PostgreSQL's text of its jsonb value (see
 * jsonAttributesFromText), for a reader that can use the text itself (the
 * stream's encoder writes a context's Struct straight from it:
 * src/services/workflow-state/encoding/). `value()` is what the row would
 * have held had the column been parsed by the driver: the parsed text, with
 * parseJsonAttributes' handling of a top-level string.
 */
export class JsonText {
  constructor(readonly text: string) {}

  value(): unknown {
    return jsonbTextValue(this.text);
  }
}

/** What the driver's parsing then parseJsonAttributes make of a jsonb value's text. */
function jsonbTextValue(text: string): unknown {
  const parsed: unknown = JSON.parse(text);
  return typeof parsed === "string" ? jsonAttributeValue(parsed) : parsed;
}

/** A JSON attribute's value as a plain row holds it: JsonText parsed, anything else as it is. */
export function jsonValueOf<T>(value: T | JsonText): T {
  return value instanceof JsonText ? (value.value() as T) : value;
}

/**
 * Takes `columns` off a row as pg built it, where they are the last columns
 * selected, in that order: the last one first. pg adds a row's properties in
 * the order selected; V8 undoes the addition of an object's last property by
 * going back to the shape it had before, while deleting any other turns the
 * object into a dictionary, larger and slower to read for everything after
 * (a streamed row is read field by field to encode it; in B5's server
 * profile our code's own time fell from 17.6 to 16.3 µs per row, means of
 * three runs, within this machine's noise). test/limits/plain-row-shape.test.ts
 * checks the shape on a row built by pg's own Result.
 */
export function dropTrailingColumns<Column extends string>(row: Partial<Record<Column, unknown>>, columns: readonly Column[]): void {
  for (let i = columns.length - 1; i >= 0; i--) delete row[columns[i]!];
}

/**
 * What Objection's $formatDatabaseJson does to a model's JSON attributes, for
 * parameters of raw SQL: each non-null one as JSON text (a JS array would
 * otherwise be sent as a PostgreSQL array). Returns a copy of `columns`.
 */
export function jsonAttributesAsText<M extends Model, Columns extends Partial<RowOf<M>>>(
  model: ModelOf<M>,
  columns: Columns,
): { [K in keyof Columns]: unknown } {
  const values: Record<string, unknown> = { ...columns };
  for (const column of model.jsonAttributes) {
    const value = values[column];
    if (value !== null && value !== undefined) values[column] = JSON.stringify(value);
  }
  return values as { [K in keyof Columns]: unknown };
}
