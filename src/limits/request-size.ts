import type { DescMethod } from "@bufbuild/protobuf";

/**
 * The RPCs whose requests carry what they store (an execution, decisions), or
 * up to 1,000 entries that may not fit 128 KiB (RenewLeases and ReleaseLeases:
 * 1,000 execution ids of 100 four-byte characters are about 410 KB): they may
 * be as large as MAX_REQUEST_BYTES. A new RPC with such a payload must be
 * named here (and its limit stated in the contract).
 */
const PAYLOAD_RPCS: ReadonlySet<string> = new Set([
  "orchestration.state.v1.WorkflowStateService.SaveWorkflowExecution",
  "orchestration.state.v1.WorkflowStateService.RenewLeases",
  "orchestration.state.v1.WorkflowStateService.ReleaseLeases",
  "orchestration.state.v1.RoutingAuditService.RecordRoutingDecision",
  "orchestration.state.v1.RoutingAuditService.RecordRoutingDecisions",
]);

/**
 * Largest request of every other RPC, in bytes (after decompression). Their
 * fields are ids, keys, filters and page tokens, which the contract bounds:
 * the largest valid one, a WatchCircuitBreakers of 100 agent keys of 200
 * four-byte characters, is about 81 KB. The cap keeps what a hostile request
 * costs to decode small: 4 MiB of packed enum values took about 0.1 s of
 * synchronous CPU just to decode, in front of every other call.
 */
export const QUERY_REQUEST_MAX_BYTES = 128 * 1024;

/** The largest request message `method` accepts, given MAX_REQUEST_BYTES. */
export function requestMaxBytes(method: DescMethod, maxRequestBytes: number): number {
  if (PAYLOAD_RPCS.has(`${method.parent.typeName}.${method.name}`)) return maxRequestBytes;
  return Math.min(QUERY_REQUEST_MAX_BYTES, maxRequestBytes);
}
