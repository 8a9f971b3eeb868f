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
export function parseJsonAttributes<M extends Model, Row extends RowOf<M>>(model: ModelOf<M>, row: Row): Row {
  const values: Record<string, unknown> = row;
  for (const column of model.jsonAttributes) {
    const value = values[column];
    if (typeof value !== "string") continue;
    try {
      values[column] = JSON.parse(value);
    } catch {
      // Not JSON text: kept as the string, as Objection does.
    }
  }
  return row;
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
