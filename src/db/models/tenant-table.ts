import { Model } from "objection";

/**
 * The base class of every model: a table of ours holds the rows of many
 * tenants, and each row's key starts with its tenant. Row-level security
 * binds every statement to the rows of one tenant_id
 * (src/tenancy/row-level-security.ts), and every index leads with it. `key`
 * is the rest of the primary key, after tenant_id.
 */
export function tenantTable(tableName: string, ...key: string[]) {
  return class TenantTable extends Model {
    static override tableName = tableName;
    static override idColumn: string | string[] = key.length === 0 ? "tenant_id" : ["tenant_id", ...key];

    /** The tenant the row belongs to (a UUID); every query names it, and row-level security checks it. */
    tenant_id!: string;
  };
}
