import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import {
  DeleteWorkflowExecutionsResponseSchema,
  GetWorkflowExecutionResponseSchema,
  ListWorkflowExecutionsResponseSchema,
  SaveWorkflowExecutionResponseSchema,
  StreamIncompleteWorkflowsResponseSchema,
  type WorkflowStateService,
} from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { timestampToDb } from "../db/convert.js";
import type { ExecutionRow } from "../db/models/workflow-execution.js";
import * as queries from "../db/queries/workflow-executions.js";
import { keysetFromToken, pageSize, pageToken } from "../pagination/page-token.js";
import { tenantScope } from "../tenancy/tenant-scope.js";
import {
  executionFromRow,
  executionToColumns,
  isTerminal,
  statusToDb,
  versionOfEtag,
} from "./workflow-state/execution-row.js";
import { ExecutionWriter } from "./workflow-state/execution-binary.js";
import { executionResponse, isBinaryCodec, unaryExecutionWriter } from "./workflow-state/execution-response.js";
import { validateDelete, validateGet, validateList, validateSave, validateStream } from "./workflow-state/validate.js";
import { throwIfStopped } from "./streaming.js";

/** What WorkflowStateService needs besides the call's tenant scope. */
export interface WorkflowStateDeps {
  /** Rows per keyset batch of StreamIncompleteWorkflows. */
  streamBatchSize: number;
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
      const rows = await queries.listExecutions(tenantScope(ctx), filters, after, limit + 1);
      const page = rows.slice(0, limit);
      const last = page[page.length - 1];
      return create(ListWorkflowExecutionsResponseSchema, {
        executions: page.map(executionFromRow),
        nextPageToken: rows.length > limit && last !== undefined ? pageToken.encode(tenantScope(ctx), [last.started_at, last.execution_id], filters) : "",
      });
    },

    async *streamIncompleteWorkflows(req, ctx) {
      validateStream(req);
      const scope = tenantScope(ctx);
      const batchSize = deps.streamBatchSize;
      // Binary codecs get each execution encoded straight from its row (see
      // executionResponse); JSON codecs get the message built by executionFromRow.
      const writer = isBinaryCodec(ctx.requestHeader.get("content-type")) ? new ExecutionWriter() : undefined;
      const read = (after: [string, string] | undefined) => {
        const batch = queries.incompleteExecutionsBatch(scope, req.workflowName, after, batchSize);
        // Awaited below, unless the call stops first: then its failure is moot.
        batch.catch(() => {});
        return batch;
      };
      // Keyset batches: memory stays at two batches whatever the row count.
      // The next batch is read while this one is sent (one query at a time),
      // so the database and the encoding overlap. Nothing more is read once
      // the client cancels or the server shuts down (both abort ctx.signal;
      // see throwIfStopped): at most the batch already being read. Each row
      // is encoded only when its turn comes (encoding a whole batch on arrival
      // measured worse: its bytes then wait, and are collected, in old space).
      throwIfStopped(ctx.signal);
      let next: Promise<ExecutionRow[]> | undefined = read(undefined);
      while (next !== undefined) {
        const rows: ExecutionRow[] = await next;
        throwIfStopped(ctx.signal);
        const last = rows[rows.length - 1];
        next = rows.length < batchSize || last === undefined ? undefined : read([last.started_at, last.execution_id]);
        for (let i = 0; i < rows.length; i++) {
          const row = rows[i]!;
          // Dropped once converted: the batch holds only the rows still to send.
          rows[i] = undefined as never;
          yield executionResponse(StreamIncompleteWorkflowsResponseSchema, row, writer);
          throwIfStopped(ctx.signal);
        }
      }
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
