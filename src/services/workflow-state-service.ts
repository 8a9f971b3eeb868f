import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import {
  ClaimIncompleteWorkflowsResponseSchema,
  DeleteWorkflowExecutionsResponseSchema,
  LeaseRenewalSchema,
  ReleaseLeasesResponseSchema,
  RenewLeasesResponseSchema,
  GetWorkflowExecutionResponseSchema,
  ListWorkflowExecutionsResponseSchema,
  SaveWorkflowExecutionResponseSchema,
  StreamIncompleteWorkflowsResponseSchema,
  type WorkflowStateService,
} from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { type DeleteBudget, deleteInBatches } from "../db/batched-delete.js";
import { timestampFromDb, timestampToDb } from "../db/convert.js";
import type { ExecutionRow } from "../db/models/workflow-execution.js";
import * as leases from "../db/queries/execution-leases.js";
import * as queries from "../db/queries/workflow-executions.js";
import { etagMismatch, requiredVersion } from "../etags/etag.js";
import { storedBytes } from "../limits/byte-budget.js";
import { keysetFromToken, nextPageToken, pageSize } from "../pagination/page-token.js";
import { boundedStream } from "../streams/bounded-stream.js";
import { keysetSource } from "../streams/keyset-source.js";
import type { StreamBudget } from "../streams/stream-limits.js";
import type { PageBudget } from "../pagination/paginate.js";
import { kTenantScope, tenantScope } from "../tenancy/tenant-scope.js";
import {
  executionToColumns,
  isTerminal,
  statusToDb,
} from "./workflow-state/execution-row.js";
import { claimBatches } from "./workflow-state/claim-source.js";
import { lazyExecution } from "./workflow-state/encoding/index.js";
import { leaseLost } from "./workflow-state/lease-lost.js";
import {
  validateClaim,
  validateDelete,
  validateGet,
  validateList,
  validateRelease,
  validateRenew,
  validateSave,
  validateStream,
} from "./workflow-state/validate.js";

/** How long releasing the leases of rows a claim stream never sent may take. */
const RELEASE_UNSENT_TIMEOUT_MS = 5_000;

/** What WorkflowStateService needs besides the call's tenant scope. */
export type WorkflowStateDeps = PageBudget & StreamBudget & DeleteBudget;

/** The handlers of WorkflowStateService: validate, run one query module call, map to the response. */
export function createWorkflowStateService(deps: WorkflowStateDeps): ServiceImpl<typeof WorkflowStateService> {
  return {
    async saveWorkflowExecution(req, ctx) {
      const execution = validateSave(req);
      const scope = tenantScope(ctx);
      const input: queries.SaveInput = {
        columns: executionToColumns(execution),
        startedAt: execution.startedAt === undefined ? null : timestampToDb(execution.startedAt),
        completedAt: execution.completedAt === undefined ? null : timestampToDb(execution.completedAt),
        terminal: isTerminal(execution.status),
        legalHold: execution.legalHold,
      };
      let row;
      if (req.etag === "" && req.fencingToken === 0n) {
        row = await queries.upsertExecution(scope, input);
      } else {
        const fencingToken = req.fencingToken === 0n ? undefined : req.fencingToken.toString();
        row = await queries.updateExecutionIf(scope, input, { version: requiredVersion(req.etag), fencingToken });
        // A lost lease wins over an etag mismatch: the caller must stop
        // working on the execution, not get it again and retry.
        if (row === undefined && fencingToken !== undefined && !(await queries.holdsLease(scope, execution.executionId, fencingToken))) {
          throw leaseLost(execution.executionId, fencingToken);
        }
        if (row === undefined) throw etagMismatch(req.etag, `the stored execution "${execution.executionId}"`);
      }
      return create(SaveWorkflowExecutionResponseSchema, { execution: lazyExecution(row) });
    },

    async getWorkflowExecution(req, ctx) {
      validateGet(req);
      const row = await queries.findExecution(tenantScope(ctx), req.executionId);
      if (row === undefined) {
        throw new ConnectError(`workflow execution "${req.executionId}" not found`, Code.NotFound);
      }
      return create(GetWorkflowExecutionResponseSchema, { execution: lazyExecution(row) });
    },

    async listWorkflowExecutions(req, ctx) {
      validateList(req);
      const limit = pageSize(req.pageSize);
      const filters: queries.ListFilters = {
        workflowName: req.workflowName,
        statuses: [...new Set(req.statuses.map(statusToDb))].sort(),
        startedAfter: req.startedAfter === undefined ? null : timestampToDb(req.startedAfter),
        startedBefore: req.startedBefore === undefined ? null : timestampToDb(req.startedBefore),
      };
      const after = keysetFromToken(tenantScope(ctx), req.pageToken, filters);
      const page = await queries.listExecutions(tenantScope(ctx), filters, after, { rows: limit, bytes: deps.pageMaxBytes });
      const token = nextPageToken(tenantScope(ctx), page, (last) => [last.started_at, last.execution_id], filters);
      return create(ListWorkflowExecutionsResponseSchema, { executions: page.rows.map(lazyExecution), nextPageToken: token });
    },

    async *streamIncompleteWorkflows(req, ctx) {
      validateStream(req);
      const scope = tenantScope(ctx);
      yield* boundedStream(ctx, deps.streams, (slot) =>
        keysetSource(
          {
            read: (after: [string, string] | undefined, limits) => queries.incompleteExecutionsBatch(scope, req.workflowName, after, limits),
            key: (row) => [row.started_at, row.execution_id],
            bytes: (row) => storedBytes(row),
            message: (row) => create(StreamIncompleteWorkflowsResponseSchema, { execution: lazyExecution(row) }),
          },
          slot,
        ),
      );
    },

    async *claimIncompleteWorkflows(req, ctx) {
      const leaseMs = validateClaim(req);
      const scope = tenantScope(ctx);
      yield* boundedStream(ctx, deps.streams, (slot) => {
        const bytes = (row: ExecutionRow) => storedBytes(row);
        const batches = claimBatches(
          { owner: req.owner, leaseMs, workflowName: req.workflowName, maxCount: req.maxCount },
          (input, limits) => leases.claimBatch(scope, input, limits),
          { slot, bytes },
        );
        return {
          read: (limits, inTurn) => batches.read(limits, inTurn),
          bytes,
          message: (row) => create(ClaimIncompleteWorkflowsResponseSchema, { execution: lazyExecution(row) }),
          // Rows claimed and never handed over (the stream's, and a batch
          // claimed ahead): give their leases back, so that other claimers
          // need not wait for them to expire. The call may be past its
          // deadline or cancelled: the release runs on a scope of its own,
          // bounded by a few seconds (a lease it cannot release expires).
          async close(unsent) {
            const all = [...unsent, ...(await batches.close())];
            if (all.length === 0) return;
            const own = ctx.values.get(kTenantScope)!.withTimeout(RELEASE_UNSENT_TIMEOUT_MS);
            await leases.releaseLeases(own, all.map((row) => ({ executionId: row.execution_id, fencingToken: row.lease_token! })));
          },
        };
      });
    },

    async renewLeases(req, ctx) {
      const leaseMs = validateRenew(req);
      const refs = req.leases.map((l) => ({ executionId: l.executionId, fencingToken: l.fencingToken.toString() }));
      const renewed = new Map((await leases.renewLeases(tenantScope(ctx), refs, leaseMs)).map((r) => [r.execution_id, r]));
      return create(RenewLeasesResponseSchema, {
        renewals: req.leases.map((l) => {
          const r = renewed.get(l.executionId);
          return create(LeaseRenewalSchema, {
            executionId: l.executionId,
            fencingToken: l.fencingToken,
            renewed: r !== undefined,
            expireTime: r === undefined ? undefined : timestampFromDb(r.lease_expire_time),
          });
        }),
      });
    },

    async releaseLeases(req, ctx) {
      validateRelease(req);
      const refs = req.leases.map((l) => ({ executionId: l.executionId, fencingToken: l.fencingToken.toString() }));
      const released = await leases.releaseLeases(tenantScope(ctx), refs);
      return create(ReleaseLeasesResponseSchema, { releasedCount: BigInt(released) });
    },

    async deleteWorkflowExecutions(req, ctx) {
      validateDelete(req);
      const scope = tenantScope(ctx);
      const filters: queries.DeleteFilters = {
        completedBefore: timestampToDb(req.completedBefore!),
        workflowName: req.workflowName,
        statuses: req.statuses.map(statusToDb),
      };
      const deleted = await deleteInBatches(deps.deleteBatchSize, (n) => queries.deleteTerminalBatch(scope, filters, n));
      return create(DeleteWorkflowExecutionsResponseSchema, { deletedCount: BigInt(deleted) });
    },
  };
}
