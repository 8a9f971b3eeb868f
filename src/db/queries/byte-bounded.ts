import type { Knex } from "knex";
import type { Model } from "objection";
import type { BoundedRows } from "../../limits/byte-budget.js";
import { dropTrailingColumns, jsonAttributesFromText, type ModelOf, parseJsonAttributes, type RowOf } from "../models/plain-rows.js";
import { JSONB_AS_TEXT } from "../type-parsers.js";

/** How many rows, and how many of their stored bytes, one page or batch holds at most (always at least one row). */
export interface RowLimits {
  rows: number;
  bytes: number;
}

/**
 * The columns byteBounded adds to each row it reads, last, taken off before
 * the rows are returned. Booleans, which pg reads without making a string (a
 * running sum and a row number each made one per row).
 */
const HELPER_COLUMNS = ["kept", "followed"] as const;

/**
 * Reads at most `limits.rows` rows of `inner` and, beyond the first, at most
 * `limits.bytes` of their `stored_bytes` in all, as plain rows of `model`
 * (JSON attributes parsed, see ../models/plain-rows.ts): the first rows of `inner` whose
 * sizes add up to the budget, and at least one row, so that a walk always
 * progresses (a row larger than the budget comes alone). `inner` selects the
 * candidate rows (with their `stored_bytes` column) in the order of
 * `orderBy`, its keyset and filters applied, and no LIMIT: one is added here.
 * `Row`: what `inner` selects, when it joins more than the model's table.
 * With `keepText`, the statement reads jsonb as text (JSONB_AS_TEXT), and
 * the JSON attributes named there stay text (see jsonAttributesFromText).
 *
 * The budget is applied in the database, over the stored sizes: the rows left
 * out of the page are never sent by PostgreSQL, let alone parsed here. The
 * running sum is computed over at most `limit + 1` rows, whose large values
 * stay in TOAST storage until a row is sent. The one row past the limit only
 * tells whether there is more: the last row returned is `followed` by another.
 *
 * The statement streams: its window functions (a running sum, a row number,
 * lead) need no more than the row at hand, so PostgreSQL sends the first row
 * before it reads the last, and it is ordered as the window is, so no sort
 * copies the rows once more. Measured on batches of 100 executions: a sort
 * by row number cost PostgreSQL about 10 µs of CPU per row, and `count(*)
 * OVER ()` held every row back until the last was read, 0.6 ms per batch
 * (docs/performance.md, "B5 against the November tree").
 */
export async function byteBounded<M extends Model, Row extends object = RowOf<M>>(
  db: Knex,
  model: ModelOf<M>,
  inner: Knex.QueryBuilder,
  orderBy: string,
  limits: RowLimits,
  keepText?: readonly string[],
): Promise<BoundedRows<Row>> {
  const { rows: limit, bytes: maxBytes } = limits;
  const { rows } = await db.raw<{ rows: (Row & Partial<Record<(typeof HELPER_COLUMNS)[number], unknown>>)[] }>(
    `SELECT * FROM (
       SELECT l.*,
              row_number() OVER w <= ? AND (sum(l.stored_bytes) OVER w <= ? OR row_number() OVER w = 1) AS kept,
              lead(true, 1, false) OVER w AS followed
       FROM (?) AS l
       WINDOW w AS (ORDER BY ${orderBy} ROWS UNBOUNDED PRECEDING)
     ) AS b
     WHERE b.kept
     ORDER BY ${orderBy}`,
    [limit, maxBytes, inner.orderByRaw(orderBy).limit(limit + 1)],
  ).options(keepText === undefined ? {} : JSONB_AS_TEXT);
  const more = rows.length > 0 && rows[rows.length - 1]!.followed === true;
  for (const row of rows) {
    dropTrailingColumns(row, HELPER_COLUMNS);
    if (keepText === undefined) parseJsonAttributes(model, row);
    else jsonAttributesFromText(model, row, keepText);
  }
  return { rows, more };
}
