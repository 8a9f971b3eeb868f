import { tenantTable } from "./tenant-table.js";
import type { RowOf } from "./plain-rows.js";

/**
 * One row of `execution_leases`: the current lease of one execution of a
 * tenant (ClaimIncompleteWorkflows; migration 20261205200000). An execution
 * without a row has no lease; an expired row is the last lease, until the
 * next claim replaces it. Timestamps and int8 columns are read as text (see
 * ../database.ts).
 */
export class ExecutionLeaseModel extends tenantTable("execution_leases", "execution_id") {
  execution_id!: string;
  /** Who claimed it (the claim's `owner`). */
  owner!: string;
  /** The fencing token: a value of row_version_seq, strictly increasing per execution, never reused. */
  token!: string;
  expire_time!: string;
}

/** One row of `execution_leases` as a plain object (see ./plain-rows.ts). */
export type LeaseRow = RowOf<ExecutionLeaseModel>;

/**
 * The lease as reads return it next to an execution's columns (joined, its
 * columns aliased; all three null without a lease): the row shape the
 * handlers read (src/services/workflow-state/).
 */
export interface LeaseColumns {
  lease_owner: LeaseRow["owner"] | null;
  lease_token: LeaseRow["token"] | null;
  lease_expire_time: LeaseRow["expire_time"] | null;
}

