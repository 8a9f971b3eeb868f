import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { Knex } from "knex";
import { databaseErrorToConnect } from "../errors/database-errors.js";
import type { Logger } from "../logging/logger.js";
import { queryWithin } from "../connection/answer-timeout.js";

/** What DatabaseAvailability watches and how often. */
export interface DatabaseAvailabilityOptions {
  knex: Knex;
  logger: Logger;
  /** Applies the migrations (main.ts: `() => migrate(knex)`); retried until it succeeds. */
  migrate: () => Promise<unknown>;
  /** Longest wait between two migration attempts (ms); the wait doubles from `retryInitialMs` up to this. */
  retryMaxMs: number;
  /** First wait after a failed migration attempt (ms). Default 250 (or `retryMaxMs` if smaller). */
  retryInitialMs?: number;
  /** Time between two `SELECT 1` probes once migrated (ms). */
  probeIntervalMs: number;
  /** A probe slower than this counts as a failure (ms). Default: the smaller of `probeIntervalMs` and 5 s. */
  probeTimeoutMs?: number;
}

/** Called with `true` when the database becomes usable, `false` when it stops being so. */
export type AvailabilityListener = (available: boolean) => void;

/**
 * Keeps track of whether the database can serve calls, so that the server can
 * start, and keep running, without it:
 * - at start, migrations are attempted, then retried in the background with
 *   capped exponential backoff (with jitter) until they succeed;
 * - until then, `interceptor` answers every call UNAVAILABLE (the schema may
 *   not exist yet, so letting calls through would answer INTERNAL);
 * - once migrated, a `SELECT 1` probe runs every `probeIntervalMs`, and at
 *   once when a call fails because the database is unreachable (or succeeds
 *   while it is marked unavailable); calls are not
 *   gated any more: while the database is away they fail with the driver's
 *   error, which the error interceptor turns into UNAVAILABLE, and they work
 *   again as soon as it is back, even before the next probe.
 * Listeners (health, through `createServer`) hear every change.
 */
export class DatabaseAvailability {
  private migrated = false;
  private available = false;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  /** The migration attempt or probe running now, if any. */
  private running: Promise<void> | undefined;
  private lastProbeStart = 0;
  private readonly listeners = new Set<AvailabilityListener>();
  private readonly retryInitialMs: number;
  private readonly probeTimeoutMs: number;

  constructor(private readonly options: DatabaseAvailabilityOptions) {
    this.retryInitialMs = Math.min(options.retryInitialMs ?? 250, options.retryMaxMs);
    this.probeTimeoutMs = options.probeTimeoutMs ?? Math.min(options.probeIntervalMs, 5_000);
  }

  /**
   * Gate for the calls of our services: UNAVAILABLE until the migrations have
   * run; afterwards lets every call through, and probes at once when one
   * fails because the database is unreachable.
   */
  readonly interceptor: Interceptor = (next) => async (req) => {
    if (!this.migrated) {
      throw new ConnectError("the database is not available yet; retry with backoff", Code.Unavailable);
    }
    try {
      const res = await next(req);
      this.noticeSuccess();
      if (!res.stream) return res;
      const source = res.message;
      const notice = (err: unknown) => this.noticeError(err);
      return {
        ...res,
        message: (async function* () {
          try {
            yield* source;
          } catch (err) {
            notice(err);
            throw err;
          }
        })(),
      };
    } catch (err) {
      this.noticeError(err);
      throw err;
    }
  };

  /**
   * Makes the first migration attempt and resolves with its outcome; on
   * failure, keeps retrying in the background. Either way, the probe takes
   * over once migrated.
   */
  async start(): Promise<boolean> {
    await this.attemptMigration(1);
    return this.migrated;
  }

  /** Stops retrying and probing, and waits for an attempt or probe still running. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  /** Registers a listener and calls it at once with the current state. Returns a function removing it. */
  onChange(listener: AvailabilityListener): () => void {
    this.listeners.add(listener);
    listener(this.available);
    return () => this.listeners.delete(listener);
  }

  /** Whether the migrations have run (calls are let through). */
  get isMigrated(): boolean {
    return this.migrated;
  }

  /** Whether the last migration attempt or probe succeeded. */
  get isAvailable(): boolean {
    return this.available;
  }

  private set(available: boolean): void {
    if (available === this.available) return;
    this.available = available;
    for (const listener of this.listeners) listener(available);
  }

  private attemptMigration(attempt: number): Promise<void> {
    const run = (async () => {
      try {
        await this.options.migrate();
      } catch (err) {
        if (this.stopped) return;
        const delayMs = this.backoff(attempt);
        this.options.logger.error("could not migrate the database; retrying (health is NOT_SERVING)", {
          attempt,
          retryInMs: delayMs,
          unavailable: isUnavailable(err),
          error: err,
        });
        this.schedule(delayMs, () => this.attemptMigration(attempt + 1));
        return;
      }
      this.migrated = true;
      if (attempt > 1) this.options.logger.info("database migrated after retrying; health is SERVING", { attempt });
      this.set(true);
      this.schedule(this.options.probeIntervalMs, () => this.probe());
    })().finally(() => {
      this.running = undefined;
    });
    this.running = run;
    return run;
  }

  /** Capped exponential backoff with jitter: 50-100% of min(max, initial * 2^(attempt-1)). */
  private backoff(attempt: number): number {
    const ceiling = Math.min(this.options.retryMaxMs, this.retryInitialMs * 2 ** Math.min(attempt - 1, 30));
    return Math.round(ceiling * (0.5 + Math.random() / 2));
  }

  private schedule(delayMs: number, work: () => Promise<void>): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void work(), delayMs);
    // A retry or probe alone does not keep the process alive.
    this.timer.unref();
  }

  private probe(): Promise<void> {
    if (this.running !== undefined || this.stopped) return this.running ?? Promise.resolve();
    this.lastProbeStart = Date.now();
    clearTimeout(this.timer);
    const run = (async () => {
      let ok = true;
      let error: unknown;
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          // pg gives up on the answer at the same time: the connection, if
          // it is dead, is closed and the pool discards it (src/connection/answer-timeout.ts).
          queryWithin(this.options.knex, "SELECT 1", this.probeTimeoutMs),
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`no answer to SELECT 1 within ${this.probeTimeoutMs} ms`)), this.probeTimeoutMs);
          }),
        ]);
      } catch (err) {
        ok = false;
        error = err;
      } finally {
        clearTimeout(timer);
      }
      if (this.stopped) return;
      if (!ok && this.available) {
        this.options.logger.warn("database unreachable: health is NOT_SERVING, calls answer UNAVAILABLE", { error });
      } else if (ok && !this.available) {
        this.options.logger.info("database reachable again: health is SERVING");
      }
      this.set(ok);
    })().finally(() => {
      this.running = undefined;
      this.schedule(this.options.probeIntervalMs, () => this.probe());
    });
    this.running = run;
    return run;
  }

  /** A call failed: if the database looked unreachable, probe now. */
  private noticeError(err: unknown): void {
    if (isUnavailable(err) && this.available) this.probeSoon();
  }

  /** A call succeeded: if the database was marked unavailable, probe now to tell health at once. */
  private noticeSuccess(): void {
    if (!this.available) this.probeSoon();
  }

  /** Probes now, or 250 ms after the last probe started; nothing if one is running. */
  private probeSoon(): void {
    if (this.stopped || !this.migrated || this.running !== undefined) return;
    const wait = this.lastProbeStart + 250 - Date.now();
    if (wait <= 0) void this.probe();
    else this.schedule(wait, () => this.probe());
  }
}

/** Whether `err`, raised by the database layer, means "the database is unreachable". */
function isUnavailable(err: unknown): boolean {
  return !(err instanceof ConnectError) && databaseErrorToConnect(err)?.code === Code.Unavailable;
}
