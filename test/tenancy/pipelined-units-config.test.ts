import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.js";

// DATABASE_PIPELINED_UNITS picks the path of tenant units on PostgreSQL
// (src/tenancy/row-level-security.ts); tenant-unit.test.ts runs both paths.

const base = { DATABASE_URL: "postgres://app@db.internal:5432/orchestrator" };

describe("DATABASE_PIPELINED_UNITS", () => {
  it("is on unless set to false", () => {
    expect(loadConfig(base)).toMatchObject({ databasePipelinedUnits: true });
    expect(loadConfig({ ...base, DATABASE_PIPELINED_UNITS: "true" })).toMatchObject({ databasePipelinedUnits: true });
    expect(loadConfig({ ...base, DATABASE_PIPELINED_UNITS: "false" })).toMatchObject({ databasePipelinedUnits: false });
  });

  it("stops the process with one line naming it when it is neither true nor false", () => {
    expect(() => loadConfig({ ...base, DATABASE_PIPELINED_UNITS: "off" })).toThrow(/DATABASE_PIPELINED_UNITS must be true or false/);
  });
});
