import * as http2 from "node:http2";
import { createContextKey, type Interceptor } from "@connectrpc/connect";
import { stopReason } from "../errors/stopped.js";

/**
 * The HTTP/2 stream a call arrived on, where it has one (not over HTTP/1.1):
 * set for every call by the server (connectNodeAdapter's contextValues, and
 * the gRPC unary fast path), read here to end a stream at shutdown and by
 * admission to hold a tenant's turn until the answer has left.
 */
export const kHttp2Stream = createContextKey<http2.ServerHttp2Stream | undefined>(undefined, {
  description: "the HTTP/2 stream of the call",
});

/** One server stream the guard tracks until its HTTP/2 stream closes (or, without one, until its messages end). */
interface OpenStream {
  h2: http2.ServerHttp2Stream | undefined;
}

/**
 * Makes every server stream end on every path, however its client reads.
 *
 * Connect writes a stream's messages one at a time and asks the handler for
 * the next one only once the last was written and drained (flow control). So
 * while a client does not read, the handler waits at its `yield`, and only
 * the next request for a message would let it notice that the call was
 * stopped. When the client then resets the stream or closes the connection
 * without an error code (RST_STREAM NO_ERROR or CANCEL, a closed socket),
 * Connect's write waits for ever: without the guard the handler never ended,
 * its call was never logged and counted in flight for good, and shutdown
 * waited for it until the grace period was over.
 *
 * The guard, the outermost interceptor, watches each stream call's signal
 * (aborted when the client cancels or goes away, at the deadline, and at
 * shutdown with UNAVAILABLE): when it is aborted while the handler waits at a
 * `yield`, the guard throws the reason into the interceptors and the handler
 * there and then, so that every `finally` runs (logging writes its line, the
 * drain stops counting the call, the stream's budget is released), and gives
 * the same error to Connect when it next asks. A handler busy when the signal
 * is aborted notices by itself (throwIfStopped, a subscription, the tenant
 * queue).
 *
 * At shutdown (`endAll`), a stream whose UNAVAILABLE trailers wait behind
 * messages its client does not read is reset with REFUSED_STREAM, which gRPC
 * clients report as UNAVAILABLE: every open stream ends at the start of
 * shutdown, none is cut when the grace period is over.
 */
export class StreamGuard {
  private readonly open = new Set<OpenStream>();
  private readonly emptied: (() => void)[] = [];

  /** The interceptor; must be the first (outermost) of every service. */
  readonly interceptor: Interceptor = (next) => async (req) => {
    const res = await next(req);
    if (!res.stream) return res;
    const entry: OpenStream = { h2: req.contextValues.get(kHttp2Stream) };
    this.open.add(entry);
    const forget = () => {
      this.open.delete(entry);
      if (this.open.size === 0) for (const resolve of this.emptied.splice(0)) resolve();
    };
    if (entry.h2 === undefined || entry.h2.closed) {
      return { ...res, message: guarded(res.message, req.signal, forget) };
    }
    entry.h2.once("close", forget);
    return { ...res, message: guarded(res.message, req.signal, () => {}) };
  };

  /** Server streams open (their HTTP/2 streams not closed yet). */
  get size(): number {
    return this.open.size;
  }

  /**
   * At shutdown, once every call's signal was aborted with UNAVAILABLE: waits
   * at most `flushMs` for the open streams to end with their trailers, then
   * resets the HTTP/2 streams still open with REFUSED_STREAM. Returns how many
   * were reset.
   */
  async endAll(flushMs: number): Promise<number> {
    if (this.open.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((resolve) => this.emptied.push(resolve)),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, flushMs))),
      ]);
      clearTimeout(timer);
    }
    let reset = 0;
    for (const { h2 } of this.open) {
      if (h2 === undefined || h2.closed || h2.destroyed) continue;
      h2.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      reset++;
    }
    return reset;
  }
}

/**
 * `source`, ended with the stop reason of `signal` as soon as the signal is
 * aborted while the consumer is not waiting for a message (see StreamGuard).
 * `onEnd` runs once, when the messages end in any way.
 */
function guarded<T>(source: AsyncIterable<T>, signal: AbortSignal, onEnd: () => void): AsyncIterableIterator<T> {
  const it = source[Symbol.asyncIterator]();
  // idle: suspended at a yield, the consumer has the last message; pulling: the consumer waits for the next one.
  let state: "idle" | "pulling" | "ended" = "idle";
  // What the consumer gets at its next request once the guard has ended the source.
  let failure: unknown;
  const end = () => {
    if (state === "ended") return false;
    state = "ended";
    signal.removeEventListener("abort", onAbort);
    onEnd();
    return true;
  };
  const stop = () => {
    if (!end()) return;
    failure = stopReason(signal);
    // The source's finally blocks run now; its own rejection is the same error.
    it.throw?.(failure).catch(() => {});
  };
  const onAbort = () => {
    if (state === "idle") stop();
  };
  signal.addEventListener("abort", onAbort, { once: true });
  return {
    [Symbol.asyncIterator]() {
      return this;
    },
    async next() {
      if (state === "ended") {
        if (failure === undefined) return { done: true, value: undefined };
        const err = failure;
        failure = undefined;
        throw err;
      }
      state = "pulling";
      let result: IteratorResult<T>;
      try {
        result = await it.next();
      } catch (err) {
        end();
        throw err;
      }
      if (result.done === true) {
        end();
        return result;
      }
      if (signal.aborted) {
        // Stopped while the message was being made: it is not sent.
        stop();
        return this.next();
      }
      state = "idle";
      return result;
    },
    async return(value?: unknown) {
      if (end()) await it.return?.(value);
      return { done: true, value: undefined };
    },
    async throw(err?: unknown) {
      if (end() && it.throw !== undefined) return it.throw(err);
      throw err;
    },
  };
}
