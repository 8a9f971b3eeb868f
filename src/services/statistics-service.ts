import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import {
  GetAgentStatisticsResponseSchema,
  ListAgentStatisticsResponseSchema,
  ListTopPerformingAgentsResponseSchema,
  ListUnderperformingAgentsResponseSchema,
  RecalculateStatisticsResponseSchema,
  RecordTaskOutcomeRequestSchema,
  RecordTaskOutcomeResponseSchema,
  type StatisticsService,
} from "../../gen/orchestration/state/v1/statistics_service_pb.js";
import { durationToMicros, timestampToDb } from "../db/convert.js";
import * as queries from "../db/queries/agent-statistics.js";
import type { TaskOutcomeListener } from "../metrics/metrics.js";
import { pageSize } from "../pagination/page-token.js";
import { type PageBudget, paginate } from "../pagination/paginate.js";
import { tenantScope } from "../tenancy/tenant-scope.js";
import { onceOnly } from "./request-ids/once-only.js";
import { statisticsFromRow } from "./statistics/statistics-row.js";
import {
  validateGet,
  validateList,
  validateRecalculate,
  validateRecordOutcome,
  validateTop,
  validateUnderperforming,
} from "./statistics/validate.js";

const DEFAULT_TOP_LIMIT = 10;
const DEFAULT_UNDERPERFORMING_LIMIT = 100;

/** What StatisticsService needs besides the call's tenant scope. */
export interface StatisticsDeps extends PageBudget {
  /** Told each outcome recorded (metrics: the agent success rate). */
  onTaskOutcome?: TaskOutcomeListener;
}

/** The handlers of StatisticsService: validate, run one query module call, map to the response. */
export function createStatisticsService(deps: StatisticsDeps): ServiceImpl<typeof StatisticsService> {
  return {
    async recordTaskOutcome(req, ctx) {
      validateRecordOutcome(req);
      const scope = tenantScope(ctx);
      const outcome = { agentKey: req.agentKey, success: req.success, durationUs: durationToMicros(req.duration) };
      if (req.requestId === "") {
        const row = await queries.recordOutcome(scope, outcome);
        deps.onTaskOutcome?.(scope.tenantId, req.agentKey, req.success);
        return create(RecordTaskOutcomeResponseSchema, { statistics: statisticsFromRow(row) });
      }
      // A retry of a call with the same request id counts once (the contract).
      const call = { method: "RecordTaskOutcome", requestId: req.requestId, requestSchema: RecordTaskOutcomeRequestSchema, request: req };
      const { response, first } = await onceOnly(scope, call, RecordTaskOutcomeResponseSchema, async (trx) =>
        create(RecordTaskOutcomeResponseSchema, {
          statistics: statisticsFromRow(await queries.recordOutcomeIn(trx, scope.tenantId, outcome)),
        }),
      );
      if (first) deps.onTaskOutcome?.(scope.tenantId, req.agentKey, req.success);
      return response;
    },

    async getAgentStatistics(req, ctx) {
      validateGet(req);
      const row = await queries.findStatistics(tenantScope(ctx), req.agentKey);
      if (row === undefined) {
        throw new ConnectError(`agent "${req.agentKey}" has no statistics`, Code.NotFound);
      }
      return create(GetAgentStatisticsResponseSchema, { statistics: statisticsFromRow(row) });
    },

    async listAgentStatistics(req, ctx) {
      validateList(req);
      const page = await paginate(tenantScope(ctx), req.pageToken, {
        // No filters: the token's fingerprint covers an empty filter set.
        filters: {},
        limit: pageSize(req.pageSize),
        maxBytes: deps.pageMaxBytes,
        read: (after, limit) => queries.listStatistics(tenantScope(ctx), after, limit),
        key: (row) => row.agent_key,
      });
      return create(ListAgentStatisticsResponseSchema, { statistics: page.rows.map(statisticsFromRow), nextPageToken: page.nextPageToken });
    },

    async listTopPerformingAgents(req, ctx) {
      validateTop(req);
      const rows = await queries.topPerforming(tenantScope(ctx), req.minimumTasks, req.limit === 0 ? DEFAULT_TOP_LIMIT : req.limit);
      return create(ListTopPerformingAgentsResponseSchema, { statistics: rows.map(statisticsFromRow) });
    },

    async listUnderperformingAgents(req, ctx) {
      validateUnderperforming(req);
      const rows = await queries.underperforming(
        tenantScope(ctx),
        req.successRateThreshold,
        req.minimumTasks,
        req.limit === 0 ? DEFAULT_UNDERPERFORMING_LIMIT : req.limit,
      );
      return create(ListUnderperformingAgentsResponseSchema, { statistics: rows.map(statisticsFromRow) });
    },

    async recalculateStatistics(req, ctx) {
      validateRecalculate(req);
      const changed = await queries.rebuildFromDecisions(tenantScope(ctx), req.since === undefined ? null : timestampToDb(req.since));
      return create(RecalculateStatisticsResponseSchema, { changedAgents: BigInt(changed) });
    },
  };
}
