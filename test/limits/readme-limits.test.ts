// The README's "Limits and fairness" section and configuration table match
// the code: every configurable limit is in both, with the default the server
// uses, and the variable is the one read.
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { type Config, defaultConfig, loadConfig } from "../../src/config.js";
import { QUERY_REQUEST_MAX_BYTES } from "../../src/limits/request-size.js";
import { MAX_STATE_FILTERS } from "../../src/services/circuit-breaker/validate.js";
import { MAX_STATUS_FILTERS } from "../../src/services/workflow-state/validate.js";

const readme = readFileSync(path.resolve(import.meta.dirname, "../../README.md"), "utf8");
const start = readme.indexOf("\n## Limits and fairness\n");
const section = readme.slice(start, readme.indexOf("\n## ", start + 1));

const LIMITS: Record<string, keyof Config> = {
  MAX_REQUEST_BYTES: "maxRequestBytes",
  PAGE_MAX_BYTES: "pageMaxBytes",
  STREAM_BATCH_SIZE: "streamBatchSize",
  STREAM_BATCH_MAX_BYTES: "streamBatchMaxBytes",
  STREAMS_MAX: "streamsMax",
  TENANT_STREAMS_MAX: "tenantStreamsMax",
  STREAMS_BUFFER_MAX_BYTES: "streamsBufferMaxBytes",
  TENANT_CALLS_MAX: "tenantCallsMax",
  TENANT_QUEUE_MAX: "tenantQueueMax",
  DATABASE_STATEMENT_TIMEOUT_MS: "databaseStatementTimeoutMs",
};

describe("README, Limits and fairness", () => {
  it("documents every configurable limit in its table and in the configuration table, with the server's default", () => {
    expect(start).toBeGreaterThan(0);
    const configRows = new Map([...readme.matchAll(/^\| `([A-Z_]+)` \| `(\d+)`/gm)].map((m) => [m[1]!, Number(m[2])]));
    for (const [name, field] of Object.entries(LIMITS)) {
      expect(configRows.get(name), name).toBe(defaultConfig[field]);
      expect(section, name).toMatch(new RegExp(`\\| \`${name}\` \\|`));
      // The variable is the one read.
      expect(loadConfig({ [name]: String(defaultConfig[field] as number + 1) })[field], name).toBe((defaultConfig[field] as number) + 1);
    }
  });

  it("states the fixed limits the code enforces", () => {
    expect(QUERY_REQUEST_MAX_BYTES).toBe(128 * 1024);
    expect(section).toContain("| 128 KiB (at most `MAX_REQUEST_BYTES`) | fixed |");
    expect([MAX_STATUS_FILTERS, MAX_STATE_FILTERS]).toEqual([10, 10]);
    expect(section).toContain("`statuses`, `states`: 10;");
  });
});
