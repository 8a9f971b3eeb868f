import { randomBytes } from "node:crypto";
import type { DescService } from "@bufbuild/protobuf";
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { hashKey } from "../../src/auth/key-store.js";
import { TENANT_HEADER } from "../../src/tenancy/tenant-interceptor.js";
import { protocolTransport, type Protocol } from "../support/clients.js";
import { newTenant } from "../support/server.js";

/** A fresh random API key (what an operator makes with `openssl rand -hex 32`). */
export function newKey(): string {
  return randomBytes(32).toString("hex");
}

/** Tenants and keys a test server is configured with. */
export interface KeyFixture {
  tenantA: string;
  tenantB: string;
  /** Writes and reads tenant A; configured by its SHA-256 only. */
  writerA: string;
  /** Reads tenant A only; configured by its SHA-256 only. */
  readerA: string;
  /** Writes and reads tenant B; configured in plain text ("key"). */
  writerB: string;
  /** The AUTH_KEYS JSON of these keys. */
  authKeys: string;
}

/** Three keys for two fresh tenants. */
export function keyFixture(): KeyFixture {
  const tenantA = newTenant();
  const tenantB = newTenant();
  const writerA = newKey();
  const readerA = newKey();
  const writerB = newKey();
  const authKeys = JSON.stringify([
    { id: "writer-a", tenant: tenantA, sha256: hashKey(writerA) },
    { id: "reader-a", tenant: tenantA, sha256: hashKey(readerA), readOnly: true },
    { id: "writer-b", tenant: tenantB, key: writerB, readOnly: false },
  ]);
  return { tenantA, tenantB, writerA, readerA, writerB, authKeys };
}

/** How a test client presents itself. */
export interface Caller {
  /** Sent as `authorization: Bearer <key>`. */
  key?: string;
  /** Sent as the whole `authorization` header, for malformed ones. */
  authorization?: string;
  /** Sent as `x-tenant-id`. */
  tenant?: string;
}

/** Interceptor sending a Caller's headers. */
export function callerHeaders(caller: Caller): Interceptor {
  return (next) => (req) => {
    if (caller.key !== undefined) req.header.set("authorization", `Bearer ${caller.key}`);
    if (caller.authorization !== undefined) req.header.set("authorization", caller.authorization);
    if (caller.tenant !== undefined) req.header.set(TENANT_HEADER, caller.tenant);
    return next(req);
  };
}

/** A Connect client (gRPC protocol over HTTP/2 by default) sending a Caller's headers. */
export function authClient<S extends DescService>(service: S, baseUrl: string, caller: Caller, protocol: Protocol = "grpc"): Client<S> {
  return createClient(service, protocolTransport(baseUrl, protocol, [callerHeaders(caller)]));
}
