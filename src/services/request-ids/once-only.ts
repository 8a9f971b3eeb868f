import { createHash } from "node:crypto";
import { type DescMessage, fromBinary, type MessageShape, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Knex } from "knex";
import { claimRequestId, storeResponse } from "../../db/queries/request-ids.js";
import type { TenantScope } from "../../tenancy/tenant-scope.js";

// Retries that count once, for RPCs with a `request_id`: the first call with
// an id does its work and stores its answer in the same transaction; a call
// with the same id (a retry, also a concurrent one) changes nothing and gets
// that answer. The contract says how long ids are remembered (24 hours at
// least) and what a reused id with another request gets (ALREADY_EXISTS).

/** The call whose request id is checked: its RPC's name, its id, and its request (hashed without the id). */
export interface OnceOnlyCall<Req extends DescMessage> {
  method: string;
  requestId: string;
  requestSchema: Req;
  request: MessageShape<Req>;
}

/**
 * Runs `work` in a tenant transaction once per request id and answers the
 * first call's response to every call with that id. `first` tells the caller
 * whether this call did the work (for side effects outside the database, such
 * as metrics).
 */
export async function onceOnly<Req extends DescMessage, Res extends DescMessage>(
  scope: TenantScope,
  call: OnceOnlyCall<Req>,
  responseSchema: Res,
  work: (trx: Knex.Transaction) => Promise<MessageShape<Res>>,
): Promise<{ response: MessageShape<Res>; first: boolean }> {
  const requestHash = createHash("sha256")
    .update(toBinary(call.requestSchema, { ...call.request, requestId: "" } as MessageShape<Req>))
    .digest("base64");
  const key = { method: call.method, requestId: call.requestId, requestHash };
  return scope.transaction(async (trx) => {
    const claim = await claimRequestId(trx, scope.tenantId, key);
    if (!claim.first) {
      if (claim.requestHash !== requestHash) {
        throw new ConnectError(
          `request_id "${call.requestId}" was used for another ${call.method} request in the last 24 hours; use a new id for a new call`,
          Code.AlreadyExists,
        );
      }
      return { response: fromBinary(responseSchema, claim.response), first: false };
    }
    const response = await work(trx);
    await storeResponse(trx, scope.tenantId, key, toBinary(responseSchema, response));
    return { response, first: true };
  });
}
