import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import type { Knex } from "knex";
import { Code, ConnectError } from "@connectrpc/connect";

/**
 * The only way a handler reaches the database: every query runs through the
 * scope of the one tenant the call acts for. Query modules take a TenantScope
 * (never a bare Knex) and filter and write `tenant_id` from it.
 *
 * This is also where a later step binds PostgreSQL row-level security to the
 * tenant (set per transaction), so that a query that forgets its filter still
 * sees only the caller's rows.
 */
export class TenantScope {
  constructor(
    /** The tenant, a lowercase UUID. */
    readonly tenantId: string,
    private readonly knex: Knex,
  ) {}

  /** Runs `work` in one transaction of this tenant. */
  transaction<T>(work: (trx: Knex.Transaction) => Promise<T>): Promise<T> {
    return this.knex.transaction(work);
  }

  /** Runs `work` with a connection of this tenant, outside an explicit transaction (single statements). */
  run<T>(work: (db: Knex) => Promise<T>): Promise<T> {
    return work(this.knex);
  }
}

/** Context key under which the tenancy interceptor stores the call's TenantScope. */
export const kTenantScope = createContextKey<TenantScope | undefined>(undefined, {
  description: "tenant scope of the call",
});

/** The TenantScope of a call of one of our services. */
export function tenantScope(ctx: HandlerContext): TenantScope {
  const scope = ctx.values.get(kTenantScope);
  // The tenancy interceptor runs before every handler of our services; reaching
  // this is a wiring bug.
  if (scope === undefined) throw new ConnectError("no tenant scope", Code.Internal);
  return scope;
}
