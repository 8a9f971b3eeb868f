import { Code, ConnectError } from "@connectrpc/connect";

/**
 * Ends a stream whose call was stopped: on server shutdown with the
 * UNAVAILABLE error the shutdown aborted the call with (the client should call
 * again, on another replica); on client cancellation or deadline with the
 * error Connect gave, which the client no longer waits for.
 */
export function throwIfStopped(signal: AbortSignal): void {
  if (!signal.aborted) return;
  throw signal.reason instanceof ConnectError ? signal.reason : new ConnectError("the call was cancelled", Code.Canceled);
}
