import type { Knex } from "knex";
import type { RequestIdRow } from "../models/request-id.js";
import { PLAN_ONCE } from "../../tenancy/tenant-scope.js";

// The SQL of request ids (retries that count once; see the migration
// 20261204020200_request_ids). Both functions run inside the caller's tenant
// transaction, the one that also does the call's work, so that the id, the
// work and the answer commit together or not at all.

/** Expired ids one new id deletes at most, so that pruning stays a bounded part of a call. */
const PRUNE_BATCH = 10;
/** How long an id is remembered at least (the contract says 24 hours). */
const REMEMBERED = "24 hours";

/** A call's request id: the RPC, the client's id, and a hash of the rest of its request. */
export interface RequestKey {
  method: string;
  requestId: string;
  requestHash: string;
}

/** What claimRequestId found: nothing (this call is the first), or the first call's hash and answer. */
export type Claim = { first: true } | { first: false; requestHash: string; response: Uint8Array };

/**
 * Claims `key` for this transaction. A concurrent transaction that claimed it
 * first makes this one wait (the primary key) until it commits, and then see
 * its answer; if it rolled back, this one claims the id. Before claiming, up
 * to PRUNE_BATCH expired ids of the tenant are deleted (rows another
 * transaction is deleting are skipped, never waited for).
 */
export async function claimRequestId(trx: Knex.Transaction, tenantId: string, key: RequestKey): Promise<Claim> {
  const binding = { tenant: tenantId, method: key.method, id: key.requestId, hash: key.requestHash };
  await trx.raw(
    `DELETE FROM request_ids WHERE ctid = ANY(ARRAY(
       SELECT ctid FROM request_ids WHERE tenant_id = :tenant AND expire_time < now()
        LIMIT ${PRUNE_BATCH} FOR UPDATE SKIP LOCKED))`,
    binding,
  ).options(PLAN_ONCE);
  const inserted = await trx.raw<{ rows: unknown[] }>(
    `INSERT INTO request_ids (tenant_id, method, request_id, request_hash, expire_time)
     VALUES (:tenant, :method, :id, :hash, now() + interval '${REMEMBERED}')
     ON CONFLICT DO NOTHING RETURNING 1`,
    binding,
  ).options(PLAN_ONCE);
  if (inserted.rows.length === 1) return { first: true };
  // response is set: the first call stored it in the transaction this one waited for.
  const { rows } = await trx.raw<{ rows: (Pick<RequestIdRow, "request_hash"> & { response: NonNullable<RequestIdRow["response"]> })[] }>(
    `SELECT request_hash, response FROM request_ids WHERE tenant_id = :tenant AND method = :method AND request_id = :id`,
    binding,
  ).options(PLAN_ONCE);
  return { first: false, requestHash: rows[0]!.request_hash, response: rows[0]!.response };
}

/** Stores the answer of the call that claimed `key`. */
export async function storeResponse(trx: Knex.Transaction, tenantId: string, key: RequestKey, response: Uint8Array): Promise<void> {
  await trx.raw(`UPDATE request_ids SET response = :response WHERE tenant_id = :tenant AND method = :method AND request_id = :id`, {
    tenant: tenantId,
    method: key.method,
    id: key.requestId,
    response: Buffer.from(response),
  }).options(PLAN_ONCE);
}
