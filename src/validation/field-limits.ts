// The lengths and counts the contract gives fields that recur across services:
// a field of one kind has one limit wherever it appears. Limits of one
// service's own fields stay in its validate.ts.

/** Ids a client chooses (executions, steps, permits) and etags: at most 100 characters. */
export const MAX_ID = 100;
/** Names and keys (workflow names, agent keys, task ids and types, request ids): at most 200 characters. */
export const MAX_NAME = 200;
/** Error messages: at most 10,000 characters. */
export const MAX_ERROR_MESSAGE = 10_000;
/** Page tokens: at most 1,000 characters (ours are far shorter). */
export const MAX_PAGE_TOKEN = 1_000;
/** Attempt and retry counts, and result limits: 0 to 1,000. */
export const MAX_COUNT_FIELD = 1_000;
