import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

/**
 * Graceful shutdown of calls: counts the calls in flight and, once
 * `stopAccepting` is called, answers new calls with UNAVAILABLE (so that
 * clients retry on another replica) while the running ones finish.
 */
export class CallDrain {
  private inFlight = 0;
  private accepting = true;
  private idle: (() => void)[] = [];

  /** Interceptor counting the calls it lets through. Must wrap every service except health and reflection. */
  readonly interceptor: Interceptor = (next) => async (req) => {
    if (!this.accepting) throw new ConnectError("the server is shutting down; retry on another replica", Code.Unavailable);
    this.inFlight++;
    let counted = true;
    const done = () => {
      if (!counted) return;
      counted = false;
      if (--this.inFlight === 0) for (const resolve of this.idle.splice(0)) resolve();
    };
    try {
      const res = await next(req);
      if (!res.stream) {
        done();
        return res;
      }
      const source = res.message;
      // A stream is in flight until its last message is sent, it fails, or the
      // client cancels (return() runs the finally).
      return {
        ...res,
        message: (async function* () {
          try {
            yield* source;
          } finally {
            done();
          }
        })(),
      };
    } catch (err) {
      done();
      throw err;
    }
  };

  /** From now on, new calls answer UNAVAILABLE. */
  stopAccepting(): void {
    this.accepting = false;
  }

  /** Resolves when no call is in flight, or after `timeoutMs`; true if all calls finished. */
  async waitIdle(timeoutMs: number): Promise<boolean> {
    if (this.inFlight === 0) return true;
    let timer: NodeJS.Timeout | undefined;
    const idle = new Promise<boolean>((resolve) => this.idle.push(() => resolve(true)));
    const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
    try {
      return await Promise.race([idle, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Number of calls in flight. */
  get active(): number {
    return this.inFlight;
  }
}
