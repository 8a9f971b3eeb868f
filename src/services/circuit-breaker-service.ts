import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import {
  AcquirePermissionResponseSchema,
  type CircuitBreakerService,
  DeleteCircuitBreakerStatesResponseSchema,
  GetCircuitBreakerStateResponseSchema,
  ListCircuitBreakerStatesResponseSchema,
  ListCircuitBreakerTransitionsResponseSchema,
  RecordCallOutcomeRequestSchema,
  RecordCallOutcomeResponseSchema,
  RecoverCircuitBreakersResponseSchema,
  ResetCircuitBreakerResponseSchema,
  SaveCircuitBreakerStateResponseSchema,
} from "../../gen/orchestration/state/v1/circuit_breaker_service_pb.js";
import { durationToMicros, timestampToDb } from "../db/convert.js";
import * as queries from "../db/queries/circuit-breakers.js";
import { etagMismatch, requiredVersion } from "../etags/etag.js";
import { pageSize } from "../pagination/page-token.js";
import { type PageBudget, paginate } from "../pagination/paginate.js";
import { POSITIVE_INT8_TEXT } from "../ranges.js";
import { boundedStream } from "../streams/bounded-stream.js";
import type { StreamBudget } from "../streams/stream-limits.js";
import { tenantScope } from "../tenancy/tenant-scope.js";
import {
  breakerColumns,
  breakerFromRow,
  fieldsFromRow,
  microsFromDb,
  microsToTimestamp,
  stateToDb,
  timestampToMicros,
  transitionColumns,
  transitionFromRow,
  unstoredBreaker,
} from "./circuit-breaker/breaker-row.js";
import { effectivePolicy, policyFromDb } from "./circuit-breaker/policy.js";
import * as machine from "./circuit-breaker/state-machine.js";
import type { TransitionFeed } from "./circuit-breaker/transition-feed.js";
import {
  validateAgentKey,
  validateDelete,
  validateList,
  validateListTransitions,
  validateRecord,
  validateSave,
  validateWatch,
} from "./circuit-breaker/validate.js";
import { watchSource } from "./circuit-breaker/watch-source.js";
import { onceOnly } from "./request-ids/once-only.js";

/** What CircuitBreakerService needs besides the call's tenant scope. */
export interface CircuitBreakerDeps extends PageBudget, StreamBudget {
  /** Transitions committed through any replica, for WatchCircuitBreakers. */
  feed: TransitionFeed;
}

/**
 * The handlers of CircuitBreakerService: validate, run one query module call,
 * map to the response. State changes are decided by the pure state machine
 * (circuit-breaker/state-machine.ts) on the row `queries.changeBreaker` has
 * locked, so replicas apply them one at a time.
 */
export function createCircuitBreakerService(deps: CircuitBreakerDeps): ServiceImpl<typeof CircuitBreakerService> {
  return {
    async saveCircuitBreakerState(req, ctx) {
      const b = validateSave(req);
      const version = requiredVersion(req.etag);
      const mismatch = () => etagMismatch(req.etag, `the stored breaker of "${b.agentKey}"`);
      const ifVersion = version === undefined ? undefined : { version, mismatch };
      const { row } = await queries.changeBreaker(tenantScope(ctx), b.agentKey, { createIfMissing: true, ifVersion }, ({ row, now }) => {
        const policy = b.policy ?? policyFromDb(row!.policy);
        const step = machine.save(
          fieldsFromRow(row!),
          {
            state: stateToDb(b.state),
            failureCount: Number(b.failureCount),
            successCount: Number(b.successCount),
            openedAtUs: b.openedAt === undefined ? null : timestampToMicros(b.openedAt),
            resetAtUs: b.resetAt === undefined ? null : timestampToMicros(b.resetAt),
          },
          effectivePolicy(policy),
          microsFromDb(now),
        );
        return written(step, undefined, b.policy);
      });
      return create(SaveCircuitBreakerStateResponseSchema, { circuitBreaker: breakerFromRow(row!) });
    },

    async getCircuitBreakerState(req, ctx) {
      validateAgentKey(req);
      const row = await queries.findBreaker(tenantScope(ctx), req.agentKey);
      if (row === undefined) throw notFound(req.agentKey);
      return create(GetCircuitBreakerStateResponseSchema, { circuitBreaker: breakerFromRow(row) });
    },

    async listCircuitBreakerStates(req, ctx) {
      validateList(req);
      const states = [...new Set(req.states.map(stateToDb))].sort();
      const page = await paginate(tenantScope(ctx), req.pageToken, {
        filters: { states },
        limit: pageSize(req.pageSize),
        maxBytes: deps.pageMaxBytes,
        read: (after, limit) => queries.listBreakers(tenantScope(ctx), { states }, after, limit),
        key: (row) => row.agent_key,
      });
      return create(ListCircuitBreakerStatesResponseSchema, { circuitBreakers: page.rows.map(breakerFromRow), nextPageToken: page.nextPageToken });
    },

    async resetCircuitBreaker(req, ctx) {
      validateAgentKey(req);
      const { row } = await queries.changeBreaker(tenantScope(ctx), req.agentKey, { createIfMissing: false }, ({ row }) => {
        if (row === undefined) throw notFound(req.agentKey);
        return written(machine.reset(fieldsFromRow(row)), undefined);
      });
      return create(ResetCircuitBreakerResponseSchema, { circuitBreaker: breakerFromRow(row!) });
    },

    async recoverCircuitBreakers(_req, ctx) {
      const rows = await queries.recoverExpired(tenantScope(ctx), MAX_RECOVERED);
      return create(RecoverCircuitBreakersResponseSchema, { circuitBreakers: rows.map(breakerFromRow) });
    },

    async deleteCircuitBreakerStates(req, ctx) {
      validateDelete(req);
      const deleted = await queries.deleteClosedBefore(tenantScope(ctx), timestampToDb(req.updatedBefore!));
      return create(DeleteCircuitBreakerStatesResponseSchema, { deletedCount: BigInt(deleted) });
    },

    async recordCallOutcome(req, ctx) {
      validateRecord(req);
      const scope = tenantScope(ctx);
      const decide: Parameters<typeof queries.changeBreaker<boolean>>[3] = ({ row, now }) => {
        const policy = effectivePolicy(policyFromDb(row!.policy));
        const failed = machine.isFailure(req.success, durationToMicros(req.duration), policy);
        const outcome = machine.recordOutcome(fieldsFromRow(row!), failed, policy, microsFromDb(now), req.permitId);
        return written(outcome, outcome.counted);
      };
      const answer = ({ row, transition, result }: queries.Changed<boolean>) =>
        create(RecordCallOutcomeResponseSchema, {
          circuitBreaker: breakerFromRow(row!),
          counted: result,
          stateChanged: transition !== undefined,
          transition: transition === undefined ? undefined : transitionFromRow(transition),
        });
      if (req.requestId === "") return answer(await queries.changeBreaker(scope, req.agentKey, { createIfMissing: true }, decide));
      // A retry of a call with the same request id counts once (the contract).
      const call = { method: "RecordCallOutcome", requestId: req.requestId, requestSchema: RecordCallOutcomeRequestSchema, request: req };
      const { response } = await onceOnly(scope, call, RecordCallOutcomeResponseSchema, async (trx) =>
        answer(await queries.changeBreakerIn(trx, scope, req.agentKey, { createIfMissing: true }, decide)),
      );
      return response;
    },

    async acquirePermission(req, ctx) {
      validateAgentKey(req);
      const { row, transition, result } = await queries.changeBreaker(
        tenantScope(ctx),
        req.agentKey,
        { createIfMissing: false },
        ({ row, now }) => {
          // No breaker: CLOSED with the default policy, and nothing to store.
          if (row === undefined) return { result: { permitted: true, retryAtUs: null as number | null, permit: undefined } };
          const policy = effectivePolicy(policyFromDb(row.policy));
          const permission = machine.acquirePermission(fieldsFromRow(row), policy, microsFromDb(now), randomUUID());
          return written(permission, { permitted: permission.permitted, retryAtUs: permission.retryAtUs, permit: permission.permit });
        },
      );
      return create(AcquirePermissionResponseSchema, {
        permitted: result.permitted,
        circuitBreaker: row === undefined ? unstoredBreaker(req.agentKey) : breakerFromRow(row),
        retryTime: result.retryAtUs === null ? undefined : microsToTimestamp(result.retryAtUs),
        permitId: result.permit?.id ?? "",
        permitExpireTime: result.permit === undefined ? undefined : microsToTimestamp(result.permit.expiresAtUs),
        transition: transition === undefined ? undefined : transitionFromRow(transition),
      });
    },

    async listCircuitBreakerTransitions(req, ctx) {
      validateListTransitions(req);
      // Newest first: each page continues before the last transition id of the one before.
      const page = await paginate(tenantScope(ctx), req.pageToken, {
        filters: { agentKey: req.agentKey },
        limit: pageSize(req.pageSize),
        maxBytes: deps.pageMaxBytes,
        read: (before, limit) => queries.listTransitions(tenantScope(ctx), req.agentKey, before, limit),
        key: (row) => row.transition_id,
        keyIsValid: (id) => POSITIVE_INT8_TEXT.test(id),
      });
      return create(ListCircuitBreakerTransitionsResponseSchema, { transitions: page.rows.map(transitionFromRow), nextPageToken: page.nextPageToken });
    },

    async *watchCircuitBreakers(req, ctx) {
      validateWatch(req);
      const scope = tenantScope(ctx);
      yield* boundedStream(ctx, deps.streams, async (slot) => {
        // Subscribe before reading the current states: a transition committed
        // while they are read is queued, not lost.
        const subscription = await deps.feed.subscribe(scope.tenantId, req.agentKeys, slot, deps.streams.options.batchMaxBytes);
        return watchSource(scope, req.agentKeys, req.includeCurrentStates, subscription, ctx.signal);
      });
    },
  };
}

/** Most breakers one RecoverCircuitBreakers call moves (the contract says so): its answer stays bounded. */
const MAX_RECOVERED = 1_000;

/** The query-module decision of a state machine step: its row and transition columns, and a result. */
function written<T>(step: machine.Step, result: T, policy?: Parameters<typeof breakerColumns>[1]): queries.Decision<T> {
  return {
    breaker: step.next === undefined ? undefined : breakerColumns(step.next, policy),
    transition: step.transition === undefined ? undefined : transitionColumns(step.transition),
    result,
  };
}

function notFound(agentKey: string): ConnectError {
  return new ConnectError(`circuit breaker of agent "${agentKey}" not found`, Code.NotFound);
}
