import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { Knex } from "knex";
import { kPrincipal } from "../auth/auth-interceptor.js";
import { invalidArgument } from "../errors/invalid-argument.js";
import { TenantScope, kTenantScope } from "./tenant-scope.js";

/** Request header naming the tenant a call acts for. */
export const TENANT_HEADER = "x-tenant-id";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

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
    const raw = req.header.get(TENANT_HEADER);
    const principal = req.contextValues.get(kPrincipal);
    if (principal !== undefined && (raw === null || raw.trim() === "")) {
      req.contextValues.set(kTenantScope, new TenantScope(principal.tenantId, knex));
      return next(req);
    }
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
    req.contextValues.set(kTenantScope, new TenantScope(tenant, knex));
    return next(req);
  };
}
