// The byte budgets of pages (PAGE_MAX_BYTES) and stream batches
// (STREAM_BATCH_MAX_BYTES): what a row weighs, and which rows fit.

/** The rows of one page or batch, and whether rows after them are left for the next one. */
export interface BoundedRows<Row> {
  rows: Row[];
  more: boolean;
}

/**
 * What a row weighs against a byte budget: the UTF-8 bytes of its text, its
 * JSON values as JSON text, and 8 for every other value (numbers, booleans,
 * timestamps). The same measure as the `stored_bytes` column the database
 * keeps for the rows that can be large (executions, routing decisions; see
 * migration 20261204030000), which those use instead. A row's protobuf
 * encoding is about as large for text; Structs of small numbers take up to
 * about five times their JSON text.
 */
export function rowBytes(row: object): number {
  let bytes = 0;
  for (const value of Object.values(row)) {
    if (typeof value === "string") bytes += Buffer.byteLength(value, "utf8");
    else if (value === null || value === undefined) continue;
    else if (typeof value === "object" && !(value instanceof Date)) bytes += Buffer.byteLength(JSON.stringify(value), "utf8");
    else bytes += 8;
  }
  return bytes;
}

/**
 * The first of `rows` that fit `limit` rows and `maxBytes` bytes in all, and
 * at least one (a row larger than the budget comes alone, so that a walk
 * always progresses); `more` when any row is left out, or `moreAfter` says
 * rows follow the ones given.
 */
export function fitWithin<Row>(rows: Row[], limit: number, maxBytes: number, bytes: (row: Row) => number, moreAfter = false): BoundedRows<Row> {
  let n = 0;
  let total = 0;
  while (n < rows.length && n < limit) {
    total += bytes(rows[n]!);
    if (n > 0 && total > maxBytes) break;
    n++;
  }
  return { rows: n === rows.length ? rows : rows.slice(0, n), more: moreAfter || n < rows.length };
}

/** A row's `stored_bytes` column (int8, read as text), for the tables that keep one. */
export function storedBytes(row: { stored_bytes: string | number }): number {
  return Number(row.stored_bytes);
}
