import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  ApplyRetentionPolicyResponseSchema,
  GetRetentionPolicyResponseSchema,
  RetentionCountsSchema,
  RetentionPolicySchema,
  type RetentionService,
  SaveRetentionPolicyResponseSchema,
} from "../../gen/orchestration/state/v1/retention_service_pb.js";
import type { RetentionDefaults } from "../config.js";
import { optionalTimestampFromDb } from "../db/convert.js";
import * as queries from "../db/queries/retention.js";
import { invalidArgument } from "../errors/invalid-argument.js";
import { etagMismatch, etagOf, requiredVersion } from "../etags/etag.js";
import type { Metrics } from "../metrics/metrics.js";
import { applyRetention } from "../retention/apply.js";
import { effectiveRetention, policyFromJson, policyToJson, policyViolations, retentionMessage } from "../retention/policy.js";
import { tenantScope } from "../tenancy/tenant-scope.js";
import { MAX_ID as MAX_ETAG } from "../validation/field-limits.js";

/** What RetentionService needs besides the call's tenant scope. */
export interface RetentionServiceDeps {
  /** The server's default policy (RETENTION_* settings). */
  defaults: RetentionDefaults;
  /** Rows per DELETE of ApplyRetentionPolicy. */
  batchSize: number;
  /** Where ApplyRetentionPolicy's deletions are counted, as the background retention's are. */
  metrics?: Metrics;
}

/** The handlers of RetentionService: validate, run the query (or retention/apply.ts), map to the response. */
export function createRetentionService(deps: RetentionServiceDeps): ServiceImpl<typeof RetentionService> {
  /** The fields every policy response carries, from the saved row (or none). */
  const policyFields = (row: queries.PolicyRow | undefined) => {
    const policy = row === undefined ? create(RetentionPolicySchema) : policyFromJson(row.policy);
    return {
      policy,
      effectivePolicy: retentionMessage(effectiveRetention(policy, deps.defaults)),
      etag: row === undefined ? "" : etagOf(row.version),
      updateTime: optionalTimestampFromDb(row?.update_time ?? null),
    };
  };
  return {
    async getRetentionPolicy(_req, ctx) {
      const row = await queries.findPolicy(tenantScope(ctx));
      return create(GetRetentionPolicyResponseSchema, policyFields(row));
    },

    async saveRetentionPolicy(req, ctx) {
      const violations = policyViolations(req.policy, "policy");
      if (req.etag.length > MAX_ETAG) violations.push({ field: "etag", description: `must be at most ${MAX_ETAG} characters` });
      if (violations.length > 0) throw invalidArgument(violations);
      const policy = req.policy ?? create(RetentionPolicySchema);
      const row = await queries.savePolicy(tenantScope(ctx), policyToJson(policy), requiredVersion(req.etag));
      if (row === undefined) throw etagMismatch(req.etag, "the saved retention policy", "none is saved");
      return create(SaveRetentionPolicyResponseSchema, policyFields(row));
    },

    async applyRetentionPolicy(req, ctx) {
      const scope = tenantScope(ctx);
      const { policy, effectivePolicy } = policyFields(await queries.findPolicy(scope));
      const outcome = await applyRetention(scope, effectiveRetention(policy, deps.defaults), {
        dryRun: req.dryRun,
        batchSize: deps.batchSize,
        onDeleted: (resource, status, rows) => deps.metrics?.retentionDeleted.inc({ resource, status }, rows),
      });
      const deleted = Object.fromEntries(Object.entries(outcome.counts).map(([key, n]) => [key, BigInt(n)]));
      return create(ApplyRetentionPolicyResponseSchema, {
        deleted: create(RetentionCountsSchema, deleted),
        heldExecutions: BigInt(outcome.held),
        effectivePolicy,
      });
    },
  };
}
