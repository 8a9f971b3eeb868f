import { create } from "@bufbuild/protobuf";
import {
  type WatchCircuitBreakersResponse,
  WatchCircuitBreakersResponseSchema,
  WatchCircuitBreakersResponse_CaughtUpSchema,
} from "../../../gen/orchestration/state/v1/circuit_breaker_service_pb.js";
import type { BreakerRow } from "../../db/models/circuit-breaker.js";
import * as queries from "../../db/queries/circuit-breakers.js";
import { fitWithin, rowBytes } from "../../limits/byte-budget.js";
import type { BatchSource } from "../../streams/bounded-stream.js";
import type { TenantScope } from "../../tenancy/tenant-scope.js";
import { breakerFromRow, type TransitionRecord, transitionFromRow } from "./breaker-row.js";
import type { Subscription } from "./transition-feed.js";

/** One message of a watch, before it is made. */
type WatchEvent =
  | { case: "currentState"; row: BreakerRow }
  | { case: "caughtUp" }
  | { case: "transition"; transition: TransitionRecord };

/**
 * The batches of a WatchCircuitBreakers stream (see boundedStream): when
 * `includeCurrentStates`, the current breakers in keyset batches from the
 * database; then `caughtUp`; then, for as long as the watch lasts, the
 * transitions `subscription` queued (subscribed before the current states are
 * read, so that none committed meanwhile is lost), as many per batch as fit.
 */
export function watchSource(
  scope: TenantScope,
  agentKeys: string[],
  includeCurrentStates: boolean,
  subscription: Subscription,
  signal: AbortSignal,
): BatchSource<WatchEvent, WatchCircuitBreakersResponse> {
  let phase: "states" | "caughtUp" | "live" = includeCurrentStates ? "states" : "caughtUp";
  let after: string | undefined;
  return {
    async read(limits, inTurn) {
      if (phase === "states") {
        const rows = await inTurn(() => queries.listBreakers(scope, { agentKeys }, after, limits.rows));
        const batch = fitWithin(rows, limits.rows, limits.bytes, rowBytes, rows.length === limits.rows);
        const last = batch.rows[batch.rows.length - 1];
        if (last !== undefined) after = last.agent_key;
        const events: WatchEvent[] = batch.rows.map((row) => ({ case: "currentState", row }));
        if (batch.more) return { rows: events, more: true };
        phase = "live";
        return { rows: [...events, { case: "caughtUp" }], more: true };
      }
      if (phase === "caughtUp") {
        phase = "live";
        return { rows: [{ case: "caughtUp" }], more: true };
      }
      const transitions = await subscription.take(limits.bytes, signal);
      return { rows: transitions.map((transition) => ({ case: "transition", transition })), more: true };
    },
    bytes(event) {
      if (event.case === "currentState") return rowBytes(event.row);
      if (event.case === "transition") return rowBytes(event.transition);
      return 0;
    },
    message(event) {
      switch (event.case) {
        case "currentState":
          return create(WatchCircuitBreakersResponseSchema, { event: { case: "currentState", value: breakerFromRow(event.row) } });
        case "caughtUp":
          return create(WatchCircuitBreakersResponseSchema, { event: { case: "caughtUp", value: create(WatchCircuitBreakersResponse_CaughtUpSchema) } });
        case "transition":
          return create(WatchCircuitBreakersResponseSchema, { event: { case: "transition", value: transitionFromRow(event.transition) } });
      }
    },
    close: () => subscription.close(),
  };
}
