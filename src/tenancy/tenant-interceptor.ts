import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { Knex } from "knex";
import { kPrincipal } from "../auth/auth-interceptor.js";
import type { Principal } from "../auth/key-store.js";
import { invalidArgument } from "../errors/invalid-argument.js";
import { TenantScope, kTenantScope } from "./tenant-scope.js";
import { UUID } from "../ranges.js";

/** Request header naming the tenant a call acts for. */
export const TENANT_HEADER = "x-tenant-id";


/**
 * Binds every call of our services to exactly one tenant, before the handler
 * runs. With API keys (the auth interceptor ran first and stored the caller's
 * key under `kPrincipal`) that is the key's tenant: `x-tenant-id` may be left
 * out, and naming another tenant answers PERMISSION_DENIED. In development
 * mode it is the `x-tenant-id` header (a UUID), required. A malformed header
 * answers INVALID_ARGUMENT naming it. The handler finds the tenant's
 * TenantScope under `kTenantScope`.
 */
export function createTenantInterceptor(knex: Knex): Interceptor {
  return (next) => async (req) => {
    const tenant = callTenant(req.header.get(TENANT_HEADER), req.contextValues.get(kPrincipal));
    req.contextValues.set(kTenantScope, new TenantScope(tenant, knex));
    return next(req);
  };
}

/**
 * The tenant a call acts for (a lowercase UUID), from its `x-tenant-id`
 * header and the Principal of its key (undefined in development mode); throws
 * INVALID_ARGUMENT or PERMISSION_DENIED as described above. What the
 * interceptor does, and what the server checks before it reads a unary call's
 * body (src/server/admission.ts), so that both always agree.
 */
export function callTenant(raw: string | null, principal: Principal | undefined): string {
  if (principal !== undefined && (raw === null || raw.trim() === "")) return principal.tenantId;
  if (raw === null || raw.trim() === "") {
    throw invalidArgument([{ field: TENANT_HEADER, description: "header is required (a tenant UUID)" }]);
  }
  // Several header values arrive joined by ", ": that is not one tenant.
  if (!UUID.test(raw.trim())) {
    throw invalidArgument([{ field: TENANT_HEADER, description: "header must be one UUID, e.g. 7c0e6c1e-5b7a-4c1e-9a51-8f2d6c3b9e10" }]);
  }
  const tenant = raw.trim().toLowerCase();
  if (principal !== undefined && tenant !== principal.tenantId) {
    throw new ConnectError(`the API key "${principal.keyId}" does not act for the tenant named in ${TENANT_HEADER}`, Code.PermissionDenied);
  }
  return tenant;
}
