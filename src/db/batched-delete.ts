/** What a service with bulk deletes (DeleteWorkflowExecutions, DeleteRoutingDecisions) is given for them. */
export interface DeleteBudget {
  /** Rows per DELETE statement (DELETE_BATCH_SIZE). */
  deleteBatchSize: number;
}

/**
 * Deletes with `deleteBatch` (one statement deleting at most `batchSize`
 * rows, returning how many it deleted) until a batch deletes fewer, and
 * returns how many rows were deleted in all. Bounded batches, each its own
 * statement: no long lock on a large table, and a failure part way keeps what
 * was already deleted.
 */
export async function deleteInBatches(batchSize: number, deleteBatch: (batchSize: number) => Promise<number>): Promise<number> {
  let deleted = 0;
  for (;;) {
    const n = await deleteBatch(batchSize);
    deleted += n;
    if (n < batchSize) return deleted;
  }
}
