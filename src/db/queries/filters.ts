import type { Knex } from "knex";

// The optional filters of list queries: a request leaves a filter empty ("",
// null, no values) to match anything.

/** What an equality filter may be given; "" and null match anything. */
type Given = string | boolean | null;

/** Filters of a list query (see whereGiven). */
export interface GivenFilters {
  equal?: Record<string, Given>;
  in?: Record<string, readonly string[]>;
  range?: { column: string; from: string | null; before: string | null };
}

/**
 * Narrows `q` to rows whose columns equal the filters given (an empty string
 * or null: any), whose `column` is in `[from, before)` where either bound is
 * given, and whose `in` columns are among their values (none: any).
 */
export function whereGiven<Q extends Knex.QueryBuilder>(q: Q, filters: GivenFilters): Q {
  for (const [column, value] of Object.entries(filters.equal ?? {})) if (value !== "" && value !== null) q.where(column, value);
  for (const [column, values] of Object.entries(filters.in ?? {})) if (values.length > 0) q.whereIn(column, values);
  const range = filters.range;
  if (range?.from != null) q.where(range.column, ">=", range.from);
  if (range?.before != null) q.where(range.column, "<", range.before);
  return q;
}
