import { tenantTable } from "./tenant-table.js";
import type { RowOf } from "./plain-rows.js";

/**
 * One row of `request_ids`: a request id of one tenant's RPC, remembered with
 * the first call's answer (retries that count once; migration
 * 20261204020200_request_ids). Timestamps are read as text (see ../database.ts).
 */
export class RequestIdModel extends tenantTable("request_ids", "method", "request_id") {
  /** The RPC's name, e.g. "RecordCallOutcome". */
  method!: string;
  request_id!: string;
  /** A hash of the rest of the request: the same id with another request is ALREADY_EXISTS. */
  request_hash!: string;
  /** The first call's answer, protobuf binary; null until that call stores it (in its transaction). */
  response!: Uint8Array | null;
  expire_time!: string;
}

/** One row of `request_ids` as a plain object (see ./plain-rows.ts). */
export type RequestIdRow = RowOf<RequestIdModel>;
