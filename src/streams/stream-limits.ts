import { Code, ConnectError } from "@connectrpc/connect";
import type { TenantLimiter } from "../limits/tenant-limiter.js";

/** The limits every server stream of the four services runs under (src/config.ts documents each). */
export interface StreamLimitsOptions {
  /** Streams open at once, server-wide (STREAMS_MAX). */
  streamsMax: number;
  /** Streams of one tenant open at once (TENANT_STREAMS_MAX). */
  tenantStreamsMax: number;
  /** Bytes all streams together hold unsent (STREAMS_BUFFER_MAX_BYTES). */
  bufferMaxBytes: number;
  /** Bytes one stream reads ahead of what its client has taken: one batch (STREAM_BATCH_MAX_BYTES). */
  batchMaxBytes: number;
  /** Rows of one batch (STREAM_BATCH_SIZE). */
  batchMaxRows: number;
  /** Turns of each tenant: a stream takes one for each batch it reads from the database. */
  turns: TenantLimiter;
}

/** What a service with server streams is given for them (as PageBudget for lists). */
export interface StreamBudget {
  /** The limits its streams run under: server-wide, shared by every stream of every service. */
  streams: StreamLimits;
}

/**
 * The server-wide account of server streams: how many are open (in all, and
 * per tenant) and how many bytes they hold that their clients have not taken
 * yet. A stream opens a StreamSlot (RESOURCE_EXHAUSTED past a cap) and counts
 * its bytes through it.
 */
export class StreamLimits {
  private streams = 0;
  private readonly byTenant = new Map<string, number>();
  private buffered = 0;

  constructor(readonly options: StreamLimitsOptions) {}

  /** Opens a stream of `tenant`; RESOURCE_EXHAUSTED when the server or the tenant already has its most streams open. */
  open(tenant: string): StreamSlot {
    const { streamsMax, tenantStreamsMax } = this.options;
    if (this.streams >= streamsMax) {
      throw exhausted(`the server has ${streamsMax} streams open, its most; retry with backoff`);
    }
    const ofTenant = this.byTenant.get(tenant) ?? 0;
    if (ofTenant >= tenantStreamsMax) {
      throw exhausted(`this tenant has ${tenantStreamsMax} streams open, its most; close one or retry with backoff`);
    }
    this.streams++;
    this.byTenant.set(tenant, ofTenant + 1);
    return new StreamSlot(this, tenant);
  }

  /** Open streams and the bytes they hold unsent, server-wide. */
  stats(): { streams: number; bufferedBytes: number } {
    return { streams: this.streams, bufferedBytes: this.buffered };
  }

  /** @internal StreamSlot's side of the account. */
  add(bytes: number, force: boolean): void {
    if (!force && bytes > 0 && this.buffered + bytes > this.options.bufferMaxBytes) {
      throw exhausted(`the server's streams hold ${this.options.bufferMaxBytes} bytes unsent, their most; retry with backoff`);
    }
    this.buffered += bytes;
  }

  /** @internal */
  closed(tenant: string): void {
    this.streams--;
    const left = (this.byTenant.get(tenant) ?? 1) - 1;
    if (left === 0) this.byTenant.delete(tenant);
    else this.byTenant.set(tenant, left);
  }
}

/** One open stream's share of StreamLimits: the bytes it holds unsent. Close it exactly once, when the stream ends. */
export class StreamSlot {
  private held = 0;
  private isClosed = false;

  constructor(
    private readonly limits: StreamLimits,
    private readonly tenant: string,
  ) {}

  /**
   * Counts `bytes` more as held by this stream. RESOURCE_EXHAUSTED, and
   * nothing counted, when the server-wide buffer would pass its cap, unless
   * `force` (bytes already in memory: a row larger than its batch's budget).
   */
  hold(bytes: number, force = false): void {
    if (this.isClosed) return;
    this.limits.add(bytes, force);
    this.held += bytes;
  }

  /** Counts `bytes` of this stream as no longer held (its client has taken them, or they were dropped). */
  release(bytes: number): void {
    const n = Math.min(bytes, this.held);
    this.held -= n;
    this.limits.add(-n, true);
  }

  /** Bytes this stream holds. */
  get heldBytes(): number {
    return this.held;
  }

  /** Releases what the stream holds and its place among the open streams. */
  close(): void {
    if (this.isClosed) return;
    this.release(this.held);
    this.isClosed = true;
    this.limits.closed(this.tenant);
  }
}

function exhausted(message: string): ConnectError {
  return new ConnectError(message, Code.ResourceExhausted);
}
