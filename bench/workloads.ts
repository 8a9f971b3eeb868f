// The requests of each workload, built once here so that the load generator
// (against our server) and the raw-pg baseline (against PostgreSQL) write the
// same rows. Content is deterministic in the call number `i`.
import { create, fromJson, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate, ValueSchema } from "@bufbuild/protobuf/wkt";
import {
  type RecordRoutingDecisionRequest,
  RecordRoutingDecisionRequestSchema,
  RecordRoutingDecisionsRequestSchema,
  type RoutingDecision,
  RoutingDecisionSchema,
} from "../gen/orchestration/state/v1/routing_audit_service_pb.js";
import { RecordTaskOutcomeRequestSchema } from "../gen/orchestration/state/v1/statistics_service_pb.js";
import {
  GetWorkflowExecutionRequestSchema,
  SaveWorkflowExecutionRequestSchema,
  type WorkflowExecution,
  WorkflowExecutionSchema,
  WorkflowStatus,
} from "../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { HealthCheckRequestSchema } from "../gen/health/v1/health_pb.js";

/** The unary workloads driven by the load generator. */
export const unaryWorkloads = ["B0", "B1", "B2", "B3-save", "B3-get", "B4"] as const;
export type UnaryWorkload = (typeof unaryWorkloads)[number];

/** The RPC path of each workload. */
export const paths: Record<UnaryWorkload, string> = {
  B0: "/grpc.health.v1.Health/Check",
  B1: "/orchestration.state.v1.RoutingAuditService/RecordRoutingDecision",
  B2: "/orchestration.state.v1.RoutingAuditService/RecordRoutingDecisions",
  "B3-save": "/orchestration.state.v1.WorkflowStateService/SaveWorkflowExecution",
  "B3-get": "/orchestration.state.v1.WorkflowStateService/GetWorkflowExecution",
  B4: "/orchestration.state.v1.StatisticsService/RecordTaskOutcome",
};

/** Decisions per call of B2. */
export const B2_BATCH = 500;
/** Executions B3 saves and reads, round robin: after the first pass, saves update. */
export const B3_EXECUTIONS = 1_000;
/** The hot agents of B4. */
export const B4_AGENTS = 10;

const agents = Array.from({ length: 20 }, (_, i) => `agent-${i}`);

/** A routing decision as an orchestrator records it: three candidates, scores, durations. */
export function decision(i: number): RoutingDecision {
  const chosen = agents[i % agents.length]!;
  return create(RoutingDecisionSchema, {
    taskId: `task-${i}`,
    taskType: "summarize",
    requiredCapability: "text.summarize",
    selectedAgent: chosen,
    priority: i % 5,
    agentScore: 0.5 + (i % 50) / 100,
    candidates: [0, 1, 2].map((k) => ({ agentKey: agents[(i + k) % agents.length]!, score: 0.9 - k * 0.1 })),
    success: i % 10 !== 0,
    errorMessage: i % 10 === 0 ? "agent timed out" : "",
    retryAttempts: i % 3,
    routingDuration: { seconds: 0n, nanos: 350_000 },
    taskDuration: { seconds: 1n, nanos: (i % 1000) * 1_000_000 },
    routedAt: timestampFromDate(new Date()),
    workflowExecutionId: `exec-${i % B3_EXECUTIONS}`,
    stepId: `step-${i % 7}`,
  });
}

export function recordDecisionRequest(i: number): RecordRoutingDecisionRequest {
  return create(RecordRoutingDecisionRequestSchema, { decision: decision(i) });
}

const stepCount = 8;
const steps = Array.from({ length: stepCount }, (_, s) => ({
  stepId: `step-${s}`,
  name: `Step ${s}: gather, rank and summarize the sources`,
  requiredCapability: "text.summarize",
  taskType: "summarize",
  dependsOn: s === 0 ? [] : [`step-${s - 1}`],
  parameters: { model: "large", temperature: 0.2, maxTokens: 2048, prompt: "Summarize the documents below for an engineer.".repeat(8) },
  timeout: { seconds: 300n, nanos: 0 },
  retryPolicy: { maxAttempts: 3, initialBackoff: { seconds: 1n, nanos: 0 }, maxBackoff: { seconds: 30n, nanos: 0 }, backoffMultiplier: 2 },
}));

/**
 * A realistic execution of 5-8 KB (protobuf; more as JSON in the
 * database): an 8-step definition, context, step executions and outputs.
 */
export function execution(i: number): WorkflowExecution {
  const done = i % stepCount;
  return create(WorkflowExecutionSchema, {
    executionId: `exec-${i % B3_EXECUTIONS}`,
    workflowName: "research-report",
    status: WorkflowStatus.RUNNING,
    definition: { name: "research-report", version: "3", steps },
    context: { customer: "acme", request: `Write a report on topic ${i}`, budgetUsd: 12.5, sources: ["a", "b", "c"].map((s) => `https://example.com/${s}/${i}`) },
    stepExecutions: steps.slice(0, done + 1).map((s, k) => ({
      stepId: s.stepId,
      status: k < done ? WorkflowStatus.COMPLETED : WorkflowStatus.RUNNING,
      agentKey: agents[k]!,
      attempt: 1,
      startedAt: timestampFromDate(new Date(1_700_000_000_000 + k * 1000)),
    })),
    stepOutputs: Object.fromEntries(
      steps.slice(0, done).map((s) => [s.stepId, fromJson(ValueSchema, { summary: "The sources agree on the main points; two disagree on dates. ".repeat(6), tokens: 812 })]),
    ),
    initiatedBy: "orchestrator-7",
    labels: { team: "research", priority: "normal" },
  });
}

/** The binary request of call `i` of a workload. */
export function requestBytes(workload: UnaryWorkload, i: number): Uint8Array {
  switch (workload) {
    case "B0":
      return toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema));
    case "B1":
      return toBinary(RecordRoutingDecisionRequestSchema, recordDecisionRequest(i));
    case "B2":
      return toBinary(
        RecordRoutingDecisionsRequestSchema,
        create(RecordRoutingDecisionsRequestSchema, { decisions: Array.from({ length: B2_BATCH }, (_, k) => decision(i * B2_BATCH + k)) }),
      );
    case "B3-save":
      return toBinary(SaveWorkflowExecutionRequestSchema, create(SaveWorkflowExecutionRequestSchema, { execution: execution(i) }));
    case "B3-get":
      return toBinary(GetWorkflowExecutionRequestSchema, create(GetWorkflowExecutionRequestSchema, { executionId: `exec-${i % B3_EXECUTIONS}` }));
    case "B4":
      return toBinary(
        RecordTaskOutcomeRequestSchema,
        create(RecordTaskOutcomeRequestSchema, { agentKey: `hot-agent-${i % B4_AGENTS}`, success: i % 4 !== 0, duration: { seconds: 2n, nanos: 0 } }),
      );
  }
}
