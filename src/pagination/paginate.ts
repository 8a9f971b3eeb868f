import { invalidArgument } from "../errors/invalid-argument.js";
import { fitWithin, rowBytes } from "../limits/byte-budget.js";
import { nextPageToken, pageToken, type TokenScope } from "./page-token.js";

/** What a service with lists is given for their pages. */
export interface PageBudget {
  /** Bytes of rows one page holds at most (PAGE_MAX_BYTES). */
  pageMaxBytes: number;
}

/** One page of a list, and the token of the next (empty on the last page). */
export interface Page<Row> {
  rows: Row[];
  nextPageToken: string;
}

/** A list ordered by one text key (an agent key, a transition id), as paginate reads it. */
export interface KeyedList<Row> {
  /** The list's filters: a token is bound to them (and to the tenant). */
  filters: unknown;
  /** Most rows of the page (see pageSize). */
  limit: number;
  /** Most bytes of rows of the page (PAGE_MAX_BYTES, measured by rowBytes). */
  maxBytes: number;
  /** Reads up to `limit` rows after the key `after` (undefined: from the first). */
  read: (after: string | undefined, limit: number) => Promise<Row[]>;
  /** The key of a row: the next page starts after the last row's. */
  key: (row: Row) => string;
  /** Whether a token's key can be one this list issued; when not, INVALID_ARGUMENT before any read. */
  keyIsValid?: (key: string) => boolean;
}

/**
 * The page of `list` that `token` asks for: reads one row more than the page
 * holds, to know whether rows are left, keeps the rows that fit the page's
 * rows and bytes, and makes the next page's token from the last row kept.
 * (Lists ordered by a time and an id bound their pages in SQL instead: see
 * keysetFromToken and src/db/queries/byte-bounded.ts.)
 */
export async function paginate<Row extends object>(scope: TokenScope, token: string, list: KeyedList<Row>): Promise<Page<Row>> {
  const after = pageToken.decode(scope, token, list.filters, 1)?.[0];
  if (after !== undefined && list.keyIsValid?.(after) === false) {
    throw invalidArgument([{ field: "page_token", description: "is not a token this service issued" }]);
  }
  const rows = await list.read(after, list.limit + 1);
  const page = fitWithin(rows, list.limit, list.maxBytes, rowBytes);
  return { rows: page.rows, nextPageToken: nextPageToken(scope, page, (last) => [list.key(last)], list.filters) };
}
