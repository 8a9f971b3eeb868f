import type { Interceptor } from "@connectrpc/connect";
import type { Knex } from "knex";
import { invalidArgument } from "../errors/invalid-argument.js";
import { TenantScope, kTenantScope } from "./tenant-scope.js";

/** Request header naming the tenant a call acts for. */
export const TENANT_HEADER = "x-tenant-id";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Binds every call of our services to exactly one tenant, taken from the
 * `x-tenant-id` header (a UUID): missing or malformed answers INVALID_ARGUMENT
 * naming the header, before the handler runs. The handler finds the tenant's
 * TenantScope under `kTenantScope`.
 */
export function createTenantInterceptor(knex: Knex): Interceptor {
  return (next) => async (req) => {
    const raw = req.header.get(TENANT_HEADER);
    if (raw === null || raw.trim() === "") {
      throw invalidArgument([{ field: TENANT_HEADER, description: "header is required (a tenant UUID)" }]);
    }
    // Several header values arrive joined by ", ": that is not one tenant.
    if (!UUID.test(raw.trim())) {
      throw invalidArgument([{ field: TENANT_HEADER, description: "header must be one UUID, e.g. 7c0e6c1e-5b7a-4c1e-9a51-8f2d6c3b9e10" }]);
    }
    req.contextValues.set(kTenantScope, new TenantScope(raw.trim().toLowerCase(), knex));
    return next(req);
  };
}
