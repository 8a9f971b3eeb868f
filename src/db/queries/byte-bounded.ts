import type { Knex } from "knex";
import type { Model } from "objection";
import type { BoundedRows } from "../../limits/byte-budget.js";
import { type ModelOf, parseJsonAttributes, type RowOf } from "../models/plain-rows.js";

/** How many rows, and how many of their stored bytes, one page or batch holds at most (always at least one row). */
export interface RowLimits {
  rows: number;
  bytes: number;
}

/** The columns byteBounded adds to each row it reads, taken off before the rows are returned. */
const HELPER_COLUMNS = ["bytes_through", "row_in_batch", "rows_in_batch"] as const;

/**
 * Reads at most `limits.rows` rows of `inner` and, beyond the first, at most
 * `limits.bytes` of their `stored_bytes` in all, as plain rows of `model`
 * (JSON attributes parsed, see ../models/plain-rows.ts): the first rows of `inner` whose
 * sizes add up to the budget, and at least one row, so that a walk always
 * progresses (a row larger than the budget comes alone). `inner` selects the
 * candidate rows (with their `stored_bytes` column) in the order of
 * `orderBy`, its keyset and filters applied, and no LIMIT: one is added here.
 * `Row`: what `inner` selects, when it joins more than the model's table.
 *
 * The budget is applied in the database, over the stored sizes: the rows left
 * out of the page are never sent by PostgreSQL, let alone parsed here. The
 * running sum is computed over at most `limit + 1` rows, whose large values
 * stay in TOAST storage until a row is sent. The one row past the limit only
 * tells whether there is more.
 */
export async function byteBounded<M extends Model, Row extends RowOf<M> = RowOf<M>>(
  db: Knex,
  model: ModelOf<M>,
  inner: Knex.QueryBuilder,
  orderBy: string,
  limits: RowLimits,
): Promise<BoundedRows<Row>> {
  const { rows: limit, bytes: maxBytes } = limits;
  const { rows } = await db.raw<{ rows: (Row & Partial<Record<(typeof HELPER_COLUMNS)[number], unknown>>)[] }>(
    `SELECT * FROM (
       SELECT l.*,
              sum(l.stored_bytes) OVER w AS bytes_through,
              row_number() OVER w AS row_in_batch,
              count(*) OVER () AS rows_in_batch
       FROM (?) AS l
       WINDOW w AS (ORDER BY ${orderBy} ROWS UNBOUNDED PRECEDING)
     ) AS b
     WHERE b.row_in_batch <= ? AND (b.bytes_through <= ? OR b.row_in_batch = 1)
     ORDER BY b.row_in_batch`,
    [inner.orderByRaw(orderBy).limit(limit + 1), limit, maxBytes],
  );
  const more = rows.length > 0 && rows.length < Number(rows[0]!.rows_in_batch);
  for (const row of rows) {
    for (const column of HELPER_COLUMNS) delete row[column];
    parseJsonAttributes(model, row);
  }
  return { rows, more };
}
