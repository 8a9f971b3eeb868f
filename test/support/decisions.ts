import { randomUUID } from "node:crypto";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { DurationSchema, TimestampSchema } from "@bufbuild/protobuf/wkt";
import { type RoutingDecision, RoutingDecisionSchema } from "../../gen/orchestration/state/v1/routing_audit_service_pb.js";

/** 2026-11-26T00:00:00Z, in seconds: the base of the routed times tests use. */
export const T0 = 1_795_651_200n;

/** A timestamp `offsetSeconds` after T0, with microsecond precision (what is stored). */
export function at(offsetSeconds: number, micros = 0) {
  return create(TimestampSchema, { seconds: T0 + BigInt(offsetSeconds), nanos: micros * 1000 });
}

/** A duration of whole microseconds. */
export function micros(us: number) {
  return create(DurationSchema, { seconds: BigInt(Math.floor(us / 1_000_000)), nanos: (us % 1_000_000) * 1000 });
}

/** A valid decision with a fresh id; `fields` override the defaults. */
export function decision(fields: MessageInitShape<typeof RoutingDecisionSchema> = {}): RoutingDecision {
  return create(RoutingDecisionSchema, {
    decisionId: randomUUID(),
    taskId: "task-1",
    selectedAgent: "agent-a",
    success: true,
    routedAt: at(0),
    ...fields,
  });
}

/** A decision's client-owned fields (what recording must give back unchanged). */
export function clientFields(d: RoutingDecision) {
  const { createTime: _createTime, ...rest } = d;
  return rest;
}
