import { tenantTable } from "./tenant-table.js";
import type { RowOf } from "./plain-rows.js";

/**
 * One row of `retention_policies`: the saved retention policy of one tenant.
 * Timestamps and int8 columns are read as text (see ../database.ts).
 */
export class RetentionPolicyModel extends tenantTable("retention_policies") {
  static override jsonAttributes = ["policy"];

  /** RetentionPolicy as protobuf JSON (proto field names). */
  policy!: object;
  /** Bumped on every save; exposed as the etag. */
  version!: string;
  create_time!: string;
  update_time!: string;
}

/** One row of `retention_policies` as a plain object (see ./plain-rows.ts). */
export type PolicyRow = RowOf<RetentionPolicyModel>;
