import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import {
  DeleteWorkflowExecutionsResponseSchema,
  GetWorkflowExecutionResponseSchema,
  SaveWorkflowExecutionResponseSchema,
  StreamIncompleteWorkflowsResponseSchema,
  type WorkflowStateService,
} from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { timestampToDb } from "../db/convert.js";
import * as queries from "../db/queries/workflow-executions.js";
import { storedBytes } from "../limits/byte-budget.js";
import { keysetFromToken, nextPageToken, pageSize } from "../pagination/page-token.js";
import { boundedStream, keysetSource } from "../streams/bounded-stream.js";
import type { StreamLimits } from "../streams/stream-limits.js";
import { tenantScope } from "../tenancy/tenant-scope.js";
import {
  executionToColumns,
  isTerminal,
  statusToDb,
  versionOfEtag,
} from "./workflow-state/execution-row.js";
import { ExecutionWriter } from "./workflow-state/execution-binary.js";
import { executionListResponse, executionResponse, isBinaryCodec, unaryExecutionWriter } from "./workflow-state/execution-response.js";
import { validateDelete, validateGet, validateList, validateSave, validateStream } from "./workflow-state/validate.js";

/** What WorkflowStateService needs besides the call's tenant scope. */
export interface WorkflowStateDeps {
  /** The limits StreamIncompleteWorkflows streams under (server-wide, shared by every stream). */
  streams: StreamLimits;
  /** Bytes of rows one page of ListWorkflowExecutions holds at most (PAGE_MAX_BYTES). */
  pageMaxBytes: number;
  /** Rows per DELETE statement of DeleteWorkflowExecutions. */
  deleteBatchSize: number;
}

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
      if (req.etag === "") {
        row = await queries.upsertExecution(scope, input);
      } else {
        const version = versionOfEtag(req.etag);
        row = version === undefined ? undefined : await queries.updateExecutionIfVersion(scope, input, version);
        if (row === undefined) {
          throw new ConnectError(
            `etag "${req.etag}" does not match the stored execution "${execution.executionId}" (it changed, or does not exist); get it again and retry`,
            Code.Aborted,
          );
        }
      }
      return executionResponse(SaveWorkflowExecutionResponseSchema, row, unaryExecutionWriter(ctx.requestHeader.get("content-type")));
    },

    async getWorkflowExecution(req, ctx) {
      validateGet(req);
      const row = await queries.findExecution(tenantScope(ctx), req.executionId);
      if (row === undefined) {
        throw new ConnectError(`workflow execution "${req.executionId}" not found`, Code.NotFound);
      }
      return executionResponse(GetWorkflowExecutionResponseSchema, row, unaryExecutionWriter(ctx.requestHeader.get("content-type")));
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
      return executionListResponse(page.rows, token, unaryExecutionWriter(ctx.requestHeader.get("content-type")));
    },

    async *streamIncompleteWorkflows(req, ctx) {
      validateStream(req);
      const scope = tenantScope(ctx);
      // Binary codecs get each execution encoded straight from its row (see
      // executionResponse), when its turn comes; JSON codecs get the message
      // built by executionFromRow.
      const writer = isBinaryCodec(ctx.requestHeader.get("content-type")) ? new ExecutionWriter() : undefined;
      yield* boundedStream(ctx, deps.streams, () =>
        keysetSource({
          read: (after: [string, string] | undefined, limits) => queries.incompleteExecutionsBatch(scope, req.workflowName, after, limits),
          key: (row) => [row.started_at, row.execution_id],
          bytes: (row) => storedBytes(row),
          message: (row) => executionResponse(StreamIncompleteWorkflowsResponseSchema, row, writer),
        }),
      );
    },

    async deleteWorkflowExecutions(req, ctx) {
      validateDelete(req);
      const scope = tenantScope(ctx);
      const filters: queries.DeleteFilters = {
        completedBefore: timestampToDb(req.completedBefore!),
        workflowName: req.workflowName,
        statuses: req.statuses.map(statusToDb),
      };
      // Bounded batches, each its own statement: no long lock on a large table,
      // and a failure part way keeps what was already deleted.
      let deleted = 0;
      for (;;) {
        const n = await queries.deleteTerminalBatch(scope, filters, deps.deleteBatchSize);
        deleted += n;
        if (n < deps.deleteBatchSize) break;
      }
      return create(DeleteWorkflowExecutionsResponseSchema, { deletedCount: BigInt(deleted) });
    },
  };
}
