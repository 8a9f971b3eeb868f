import { Code, ConnectError } from "@connectrpc/connect";

/**
 * The error a call that was stopped ends with: on server shutdown the
 * UNAVAILABLE the shutdown aborted the call with (the client should call
 * again, on another replica); at its deadline DEADLINE_EXCEEDED; when the
 * client cancelled or went away, the error Connect gave, or CANCELLED when
 * the signal was aborted without one (a stream reset with NO_ERROR, a
 * connection closed).
 */
export function stopReason(signal: AbortSignal): ConnectError {
  return signal.reason instanceof ConnectError ? signal.reason : new ConnectError("the call was cancelled", Code.Canceled);
}

/** Throws the stop reason of a call that was stopped (see stopReason); does nothing otherwise. */
export function throwIfStopped(signal: AbortSignal): void {
  if (signal.aborted) throw stopReason(signal);
}
