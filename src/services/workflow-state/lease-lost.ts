import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorInfoSchema } from "../../../gen/google/rpc/error_details_pb.js";

/** google.rpc.ErrorInfo reason of a fenced save whose lease is no longer the execution's current one. */
export const LEASE_LOST_REASON = "LEASE_LOST";
/** google.rpc.ErrorInfo domain of this service's errors. */
export const ERROR_DOMAIN = "orchestration.state.v1";

/**
 * The FAILED_PRECONDITION of a fenced SaveWorkflowExecution whose lease was
 * lost (expired, released, ended, or the execution deleted): distinct from
 * ABORTED (an etag mismatch, which a client retries after reading again),
 * since the caller must stop working on the execution. The ErrorInfo detail
 * lets clients in any language tell it apart by reason, not by message.
 */
export function leaseLost(executionId: string, fencingToken: string): ConnectError {
  const detail = create(ErrorInfoSchema, {
    reason: LEASE_LOST_REASON,
    domain: ERROR_DOMAIN,
    metadata: { execution_id: executionId, fencing_token: fencingToken },
  });
  return new ConnectError(
    `the lease with fencing token ${fencingToken} on workflow execution "${executionId}" was lost (it expired, was released or ended, or the execution was deleted); stop working on it`,
    Code.FailedPrecondition,
    undefined,
    [{ desc: ErrorInfoSchema, value: detail }],
  );
}
