import type { Knex } from "knex";

// The rule that keeps the schema ready for distributed PostgreSQL (Citus,
// sharding by tenant_id; docs/scaling.md): every table of ours has a
// tenant_id column and a primary key, and its primary key and every unique
// constraint or unique index lead with tenant_id, so that each of them can be
// enforced on one shard. Knex's own bookkeeping tables (knex_migrations*) are
// not ours: they would be local tables of the coordinator. Partitions are
// checked through their parent, whose indexes they all have.
// ../citus-ready.test.ts runs it on the migrated schema, and shows
// it reporting a table that breaks it.

/** The tables checked in `schema`, and what breaks the rule there, one line per table or key. */
export async function tenantKeyViolations(knex: Knex, schema: string): Promise<{ tables: string[]; violations: string[] }> {
  const tables = await knex.raw<{ rows: { name: string; has_tenant: boolean; has_primary: boolean }[] }>(
    `SELECT c.relname AS name,
            EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped) AS has_tenant,
            EXISTS (SELECT FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'p') AS has_primary
       FROM pg_class c
      WHERE c.relnamespace = to_regnamespace(?) AND c.relkind IN ('r', 'p') AND NOT c.relispartition
        AND c.relname NOT LIKE 'knex\\_migrations%'
      ORDER BY c.relname`,
    [schema],
  );
  // Unique indexes (those behind PRIMARY KEY and UNIQUE constraints included),
  // and constraints that enforce uniqueness (p, u, x), by their first column
  // (an expression index has none: attnum 0).
  const keys = await knex.raw<{ rows: { table: string; key: string; kind: string; first: string | null }[] }>(
    `SELECT c.relname AS table, i.relname AS key, CASE WHEN x.indisprimary THEN 'primary key'
                 WHEN EXISTS (SELECT FROM pg_constraint k WHERE k.conindid = x.indexrelid AND k.contype = 'u') THEN 'unique constraint'
                 ELSE 'unique index' END AS kind,
            (SELECT a.attname FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum = x.indkey[0] AND x.indkey[0] <> 0) AS first
       FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid
      WHERE c.relnamespace = to_regnamespace(?) AND x.indisunique AND NOT c.relispartition
        AND c.relname NOT LIKE 'knex\\_migrations%'
     UNION ALL
     SELECT c.relname, k.conname, CASE k.contype WHEN 'p' THEN 'primary key' WHEN 'u' THEN 'unique constraint' ELSE 'exclusion constraint' END,
            (SELECT a.attname FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum = k.conkey[1])
       FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
      WHERE c.relnamespace = to_regnamespace(?) AND k.contype IN ('p', 'u', 'x') AND NOT c.relispartition
        AND c.relname NOT LIKE 'knex\\_migrations%'
      ORDER BY 1, 2`,
    [schema, schema],
  );
  const violations: string[] = [];
  for (const t of tables.rows) {
    if (!t.has_tenant) violations.push(`${t.name}: no tenant_id column`);
    if (!t.has_primary) violations.push(`${t.name}: no primary key`);
  }
  const seen = new Set<string>();
  for (const k of keys.rows) {
    if (k.first === "tenant_id") continue;
    const line = `${k.table}: ${k.kind} ${k.key} leads with ${k.first ?? "an expression"}, not tenant_id`;
    if (!seen.has(`${k.table}.${k.key}`)) violations.push(line);
    seen.add(`${k.table}.${k.key}`);
  }
  return { tables: tables.rows.map((t) => t.name), violations };
}
