import { Code, ConnectError } from "@connectrpc/connect";
import { CircuitBreakerService } from "../../gen/orchestration/state/v1/circuit_breaker_service_pb.js";
import { connectClient, type Protocol } from "../support/clients.js";

/** A Connect client of CircuitBreakerService acting for `tenant` (its own HTTP/2 connection). */
export function breakerClient(baseUrl: string, tenant: string | undefined, protocol: Protocol = "grpc") {
  return connectClient(CircuitBreakerService, baseUrl, tenant, protocol);
}

/** The code a call ends with ("ok" when it succeeds). */
export async function codeOf(call: Promise<unknown>): Promise<Code | "ok"> {
  try {
    await call;
    return "ok";
  } catch (err) {
    return ConnectError.from(err).code;
  }
}

/** The error a call fails with; fails the test when the call succeeds. */
export async function errorOf(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("the call succeeded, but an error was expected");
}

/** A Timestamp `seconds` from now (negative: in the past). */
export function fromNow(seconds: number) {
  return { seconds: BigInt(Math.floor(Date.now() / 1000) + seconds), nanos: 0 };
}

/** Fails instead of hanging when an expected stream message never comes. */
export async function nextWithin<T>(it: AsyncIterator<T>, ms = 5_000): Promise<IteratorResult<T>> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no stream message within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([it.next(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
