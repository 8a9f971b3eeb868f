import { CircuitBreakerService } from "../../gen/orchestration/state/v1/circuit_breaker_service_pb.js";
import { connectClient, type Protocol } from "../support/clients.js";

/** A Connect client of CircuitBreakerService acting for `tenant` (its own HTTP/2 connection). */
export function breakerClient(baseUrl: string, tenant: string | undefined, protocol: Protocol = "grpc") {
  return connectClient(CircuitBreakerService, baseUrl, tenant, protocol);
}

/** A Timestamp `seconds` from now (negative: in the past). */
export function fromNow(seconds: number) {
  return { seconds: BigInt(Math.floor(Date.now() / 1000) + seconds), nanos: 0 };
}

