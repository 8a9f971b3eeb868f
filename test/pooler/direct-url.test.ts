import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.js";

// DATABASE_DIRECT_URL (docs/scaling.md, "PgBouncer in transaction pooling
// mode") is checked at startup like every setting: a value that cannot work
// stops the process with one line naming the variable.

const base = { DATABASE_URL: "postgres://app@pgbouncer.internal:6432/orchestrator" };

describe("DATABASE_DIRECT_URL and DATABASE_PREPARED_STATEMENTS", () => {
  it("are read next to DATABASE_URL; prepared statements follow the direct URL unless set", () => {
    expect(loadConfig(base)).toMatchObject({ databaseDirectUrl: undefined, databasePreparedStatements: undefined });
    const direct = "postgresql://app@db.internal:5432/orchestrator";
    expect(loadConfig({ ...base, DATABASE_DIRECT_URL: direct })).toMatchObject({ databaseDirectUrl: direct });
    expect(loadConfig({ ...base, DATABASE_DIRECT_URL: direct, DATABASE_PREPARED_STATEMENTS: "true" })).toMatchObject({ databasePreparedStatements: true });
  });

  it("refuse a direct URL without DATABASE_URL, one that is not a postgres:// URL, and a prepared-statements value that is not a boolean", () => {
    expect(() => loadConfig({ DATABASE_DIRECT_URL: "postgres://db.internal/x" })).toThrow(/DATABASE_DIRECT_URL is set without DATABASE_URL/);
    for (const bad of ["db.internal:5432", "mysql://db.internal/x", "http://db.internal/x"]) {
      expect(() => loadConfig({ ...base, DATABASE_DIRECT_URL: bad })).toThrow(/DATABASE_DIRECT_URL must be a PostgreSQL URL/);
    }
    expect(() => loadConfig({ ...base, DATABASE_PREPARED_STATEMENTS: "no" })).toThrow(/DATABASE_PREPARED_STATEMENTS must be true or false/);
  });
});
