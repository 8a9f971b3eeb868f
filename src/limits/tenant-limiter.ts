import { Code, ConnectError } from "@connectrpc/connect";
import { stopReason } from "../errors/stopped.js";

/** Gives back a turn taken from a TenantLimiter; calling it again does nothing. */
export type Release = () => void;

/** The signal that ends a wait for a turn, or a function making it (called only when the call must wait). */
export type Signal = AbortSignal | (() => AbortSignal) | undefined;

interface Waiter {
  grant: (release: Release) => void;
  fail: (err: unknown) => void;
}

/** One tenant's turns: how many are taken, and who waits for one, first come first served. */
interface TenantTurns {
  running: number;
  waiting: Waiter[];
}

/**
 * Per-tenant fairness: at most `maxRunning` turns of one tenant are taken at
 * once (a turn is a unary call, or one batch read of a stream); the next ones
 * wait in that tenant's own queue, in arrival order, and at most `maxWaiting`
 * of them: one more answers RESOURCE_EXHAUSTED at once. So one tenant's burst
 * queues behind itself, and another tenant's call goes straight through.
 *
 * Tenants without a turn taken or waited for are forgotten: memory is bounded
 * by the calls in flight, not by how many tenants ever called.
 */
export class TenantLimiter {
  private readonly tenants = new Map<string, TenantTurns>();

  constructor(
    private readonly maxRunning: number,
    private readonly maxWaiting: number,
  ) {}

  /**
   * Takes a turn of `tenant`: at once (a Release) when one is free, else a
   * promise of one. The promise rejects with RESOURCE_EXHAUSTED when the
   * tenant's queue is full, and with the signal's reason when `signal` aborts
   * first (the client cancelled, its deadline passed, the server shuts down).
   */
  acquire(tenant: string, signalOrMake?: Signal): Release | Promise<Release> {
    let turns = this.tenants.get(tenant);
    if (turns === undefined) {
      turns = { running: 0, waiting: [] };
      this.tenants.set(tenant, turns);
    }
    if (turns.running < this.maxRunning) {
      turns.running++;
      return this.releaseOf(tenant, turns);
    }
    if (turns.waiting.length >= this.maxWaiting) {
      return Promise.reject(
        new ConnectError(
          `too many calls of this tenant at once (${this.maxRunning} running, ${this.maxWaiting} waiting); retry with backoff`,
          Code.ResourceExhausted,
        ),
      );
    }
    const signal = typeof signalOrMake === "function" ? signalOrMake() : signalOrMake;
    if (signal?.aborted === true) return Promise.reject(stopReason(signal));
    return new Promise<Release>((resolve, reject) => {
      const waiter: Waiter = {
        grant: (release) => {
          signal?.removeEventListener("abort", onAbort);
          resolve(release);
        },
        fail: reject,
      };
      const onAbort = () => {
        const i = turns.waiting.indexOf(waiter);
        if (i >= 0) turns.waiting.splice(i, 1);
        this.forgetIfIdle(tenant, turns);
        reject(stopReason(signal!));
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      turns.waiting.push(waiter);
    });
  }

  /** Runs `work` in a turn of `tenant` (see acquire), giving the turn back when it settles. */
  async run<T>(tenant: string, signal: Signal, work: () => Promise<T>): Promise<T> {
    const taken = this.acquire(tenant, signal);
    const release = typeof taken === "function" ? taken : await taken;
    try {
      return await work();
    } finally {
      release();
    }
  }

  /** Turns taken and waited for, over all tenants (stats). */
  totals(): { running: number; waiting: number } {
    let running = 0;
    let waiting = 0;
    for (const t of this.tenants.values()) {
      running += t.running;
      waiting += t.waiting.length;
    }
    return { running, waiting };
  }

  private releaseOf(tenant: string, turns: TenantTurns): Release {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = turns.waiting.shift();
      // The turn passes straight to the next waiter of the same tenant.
      if (next !== undefined) next.grant(this.releaseOf(tenant, turns));
      else {
        turns.running--;
        this.forgetIfIdle(tenant, turns);
      }
    };
  }

  private forgetIfIdle(tenant: string, turns: TenantTurns): void {
    if (turns.running === 0 && turns.waiting.length === 0 && this.tenants.get(tenant) === turns) this.tenants.delete(tenant);
  }
}
