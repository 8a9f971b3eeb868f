// Fixtures of the stream tests: a table of rows with sizes, a handler context
// of a tenant, and small stream limits.
import { create } from "@bufbuild/protobuf";
import { createContextValues, type HandlerContext } from "@connectrpc/connect";
import { Health, HealthCheckResponseSchema } from "../../gen/health/v1/health_pb.js";
import { TenantLimiter } from "../../src/limits/tenant-limiter.js";
import type { BatchLimits } from "../../src/streams/bounded-stream.js";
import { StreamLimits } from "../../src/streams/stream-limits.js";
import { kTenantScope, TenantScope } from "../../src/tenancy/tenant-scope.js";

export interface Row {
  id: number;
  bytes: number;
}

export const message = (r: Row) => create(HealthCheckResponseSchema, { status: r.id });

/** The rows of `rows` after `after`, within the row and byte limits (at least one row). */
export function readTable(rows: Row[], after: number | undefined, l: BatchLimits): { rows: Row[]; more: boolean } {
  const rest = rows.filter((r) => after === undefined || r.id > after);
  const batch: Row[] = [];
  let bytes = 0;
  for (const r of rest) {
    if (batch.length === l.rows || (batch.length > 0 && bytes + r.bytes > l.bytes)) break;
    batch.push(r);
    bytes += r.bytes;
  }
  return { rows: batch, more: batch.length < rest.length };
}

export function context(tenant: string, signal = new AbortController().signal): HandlerContext {
  const values = createContextValues().set(kTenantScope, new TenantScope(tenant, undefined as never));
  return { signal, values, method: Health.methods[0]!, service: Health } as unknown as HandlerContext;
}

export function limits(over: Partial<ConstructorParameters<typeof StreamLimits>[0]> = {}) {
  return new StreamLimits({
    streamsMax: 10,
    tenantStreamsMax: 10,
    bufferMaxBytes: 10_000,
    batchMaxBytes: 1_000,
    batchMaxRows: 4,
    turns: new TenantLimiter(10, 10),
    ...over,
  });
}

