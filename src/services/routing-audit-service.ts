import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import {
  DeleteRoutingDecisionsResponseSchema,
  ListRoutingDecisionsResponseSchema,
  RecordRoutingDecisionResponseSchema,
  RecordRoutingDecisionsResponseSchema,
  type RoutingAuditService,
  SummarizeAgentDecisionsResponseSchema,
  SummarizeDecisionsOverTimeResponseSchema,
} from "../../gen/orchestration/state/v1/routing_audit_service_pb.js";
import { type DeleteBudget, deleteInBatches } from "../db/batched-delete.js";
import { timestampToDb } from "../db/convert.js";
import type { DecisionRow } from "../db/models/routing-decision.js";
import * as queries from "../db/queries/routing-decisions.js";
import type { TaskOutcomeListener } from "../metrics/metrics.js";
import { keysetFromToken, MAX_PAGE_SIZE, nextPageToken, pageSize } from "../pagination/page-token.js";
import { type PageBudget, paginate } from "../pagination/paginate.js";
import { tenantScope } from "../tenancy/tenant-scope.js";
import { decisionFromRow, decisionToColumns, summaryFromRow, timeBucketFromRow } from "./routing-audit/decision-row.js";
import { DEFAULT_MAX_BATCH, GroupCommit } from "./routing-audit/group-commit.js";
import {
  DECISION_ID,
  validateDelete,
  validateList,
  validateRecord,
  validateRecordBatch,
  validateSummarize,
  validateSummarizeOverTime,
} from "./routing-audit/validate.js";

/** What RoutingAuditService needs besides the call's tenant scope. */
export interface RoutingAuditDeps extends PageBudget, DeleteBudget {
  /**
   * Most decisions per group commit of RecordRoutingDecision (see
   * routing-audit/group-commit.ts); default DEFAULT_MAX_BATCH (500). 1: one
   * decision per transaction.
   */
  groupCommitMaxBatch?: number;
  /** Told the decisions of each group-commit batch written (metrics). */
  onGroupCommitBatch?: (decisions: number) => void;
  /** Told each outcome recorded with `update_statistics` (metrics). */
  onTaskOutcome?: TaskOutcomeListener;
}

/** The handlers of RoutingAuditService: validate, run one query module call, map to the response. */
export function createRoutingAuditService(deps: RoutingAuditDeps): ServiceImpl<typeof RoutingAuditService> {
  // Concurrent RecordRoutingDecision calls of a tenant share one transaction
  // and one commit; each is answered after that commit with its own row.
  const groupCommit = new GroupCommit(deps.groupCommitMaxBatch ?? DEFAULT_MAX_BATCH, deps.onGroupCommitBatch);
  const outcomes = (tenant: string, rows: DecisionRow[]) => {
    for (const row of rows) deps.onTaskOutcome?.(tenant, row.selected_agent, row.success);
  };
  return {
    async recordRoutingDecision(req, ctx) {
      const decision = validateRecord(req);
      const columns = decisionToColumns(decision);
      const [row] = await record(
        [columns],
        async () => [await groupCommit.record(tenantScope(ctx), columns, req.updateStatistics, ctx.signal)],
        () => "decision.decision_id",
      );
      if (req.updateStatistics) outcomes(tenantScope(ctx).tenantId, [row!]);
      return create(RecordRoutingDecisionResponseSchema, { decision: decisionFromRow(row!) });
    },

    async recordRoutingDecisions(req, ctx) {
      const decisions = validateRecordBatch(req);
      const columns = decisions.map(decisionToColumns);
      const rows = await record(
        columns,
        () => queries.insertDecisions(tenantScope(ctx), columns, req.updateStatistics),
        (i) => `decisions[${i}].decision_id`,
      );
      if (req.updateStatistics) outcomes(tenantScope(ctx).tenantId, rows);
      return create(RecordRoutingDecisionsResponseSchema, { decisions: rows.map(decisionFromRow) });
    },

    async listRoutingDecisions(req, ctx) {
      validateList(req);
      const limit = pageSize(req.pageSize);
      const filters: queries.ListFilters = {
        taskId: req.taskId,
        taskType: req.taskType,
        selectedAgent: req.selectedAgent,
        workflowExecutionId: req.workflowExecutionId,
        stepId: req.stepId,
        success: req.success ?? null,
        routedAfter: req.routedAfter === undefined ? null : timestampToDb(req.routedAfter),
        routedBefore: req.routedBefore === undefined ? null : timestampToDb(req.routedBefore),
      };
      const after = keysetFromToken(tenantScope(ctx), req.pageToken, filters, DECISION_ID);
      const page = await queries.listDecisions(tenantScope(ctx), filters, after, { rows: limit, bytes: deps.pageMaxBytes });
      return create(ListRoutingDecisionsResponseSchema, {
        decisions: page.rows.map(decisionFromRow),
        nextPageToken: nextPageToken(tenantScope(ctx), page, (last) => [last.routed_at, last.decision_id], filters),
      });
    },

    async summarizeAgentDecisions(req, ctx) {
      validateSummarize(req);
      const filters = {
        routedAfter: req.routedAfter === undefined ? null : timestampToDb(req.routedAfter),
        routedBefore: req.routedBefore === undefined ? null : timestampToDb(req.routedBefore),
      };
      const page = await paginate(tenantScope(ctx), req.pageToken, {
        filters,
        // 0 is every agent of a range, up to the most a page holds: what the RPC answered before it had pages.
        limit: req.pageSize === 0 ? MAX_PAGE_SIZE : pageSize(req.pageSize),
        maxBytes: deps.pageMaxBytes,
        read: (after, limit) => queries.summarizeByAgent(tenantScope(ctx), filters.routedAfter, filters.routedBefore, after, limit),
        key: (row) => row.agent_key,
      });
      return create(SummarizeAgentDecisionsResponseSchema, { summaries: page.rows.map(summaryFromRow), nextPageToken: page.nextPageToken });
    },

    async deleteRoutingDecisions(req, ctx) {
      validateDelete(req);
      const routedBefore = timestampToDb(req.routedBefore!);
      const deleted = await deleteInBatches(deps.deleteBatchSize, (n) => queries.deleteRoutedBeforeBatch(tenantScope(ctx), routedBefore, n));
      return create(DeleteRoutingDecisionsResponseSchema, { deletedCount: BigInt(deleted) });
    },

    async summarizeDecisionsOverTime(req, ctx) {
      const range = validateSummarizeOverTime(req);
      const rows = await queries.summarizeByTime(
        tenantScope(ctx),
        timestampToDb(req.routedAfter!),
        timestampToDb(req.routedBefore!),
        range.widthUs,
        { selectedAgent: req.selectedAgent, taskType: req.taskType },
      );
      return create(SummarizeDecisionsOverTimeResponseSchema, { buckets: rows.map((row) => timeBucketFromRow(row, range)) });
    },
  };
}

/**
 * Stores decisions with `store`; a decision id already stored with other
 * content (DecisionIdConflict, indexes into `columns`) answers ALREADY_EXISTS
 * naming its field.
 */
async function record(
  columns: queries.DecisionColumns[],
  store: () => Promise<DecisionRow[]>,
  fieldOf: (index: number) => string,
): Promise<DecisionRow[]> {
  try {
    return await store();
  } catch (err) {
    if (!(err instanceof queries.DecisionIdConflict)) throw err;
    const fields = err.indexes.map(fieldOf);
    throw new ConnectError(
      `${fields.map((f, k) => `${f} "${columns[err.indexes[k]!]!.decision_id}"`).join(", ")}: already recorded with different content; ` +
        "a retry must resend the same decision, a new decision needs a new id (nothing was stored)",
      Code.AlreadyExists,
    );
  }
}
