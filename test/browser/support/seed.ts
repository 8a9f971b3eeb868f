import { create } from "@bufbuild/protobuf";
import { DurationSchema, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { CircuitBreakerService, CircuitState } from "../../../gen/orchestration/state/v1/circuit_breaker_service_pb.js";
import { type RoutingDecision, RoutingAuditService, RoutingDecisionSchema } from "../../../gen/orchestration/state/v1/routing_audit_service_pb.js";
import { WorkflowStateService, WorkflowStatus } from "../../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { authClient } from "../../auth/support.js";

// What the browser tests expect to see: one tenant's breakers in every state,
// decisions with candidates over the last day (and the statistics they add
// up to), and executions at several stages. Every name of the other tenant
// starts with "beta", so that a page can be searched for any of it.

const seconds = (s: number) => create(DurationSchema, { seconds: BigInt(Math.floor(s)), nanos: Math.round((s % 1) * 1e9) });
const ago = (ms: number) => timestampFromMs(Math.round(Date.now() - ms));
const MIN = 60_000;

/** The tenant the dashboard signs in to. */
export const AGENTS = ["search-agent", "summarizer-1", "translator", "classifier-2"];

/** Decisions per hour over the last day, oldest hour first (96 in all). */
const PER_HOUR = [1, 1, 1, 2, 2, 3, 4, 5, 6, 7, 7, 6, 6, 5, 5, 6, 7, 6, 5, 4, 3, 2, 1, 1];

/** Seeds the dashboard's tenant through its writing key on the main port; returns the decisions recorded. */
export async function seedTenant(baseUrl: string, key: string): Promise<RoutingDecision[]> {
  const breakers = authClient(CircuitBreakerService, baseUrl, { key });
  // CLOSED with one failure counted: two more open it (the live test does).
  await breakers.saveCircuitBreakerState({ circuitBreaker: { agentKey: "search-agent", state: CircuitState.CLOSED, policy: { consecutiveFailureThreshold: 3, openDuration: seconds(600) } } });
  for (const success of [true, true, false]) await breakers.recordCallOutcome({ agentKey: "search-agent", success });
  // OPEN for five minutes.
  await breakers.saveCircuitBreakerState({ circuitBreaker: { agentKey: "summarizer-1", state: CircuitState.CLOSED, policy: { consecutiveFailureThreshold: 2, openDuration: seconds(300) } } });
  for (const success of [true, false, false]) await breakers.recordCallOutcome({ agentKey: "summarizer-1", success });
  // HALF_OPEN: opened for a millisecond, then a trial call granted.
  await breakers.saveCircuitBreakerState({ circuitBreaker: { agentKey: "translator", state: CircuitState.CLOSED, policy: { consecutiveFailureThreshold: 1, openDuration: seconds(0.001) } } });
  await breakers.recordCallOutcome({ agentKey: "translator", success: false });
  await new Promise((resolve) => setTimeout(resolve, 20));
  await breakers.acquirePermission({ agentKey: "translator" });
  await breakers.saveCircuitBreakerState({ circuitBreaker: { agentKey: "billing-agent", state: CircuitState.FORCED_OPEN } });
  await breakers.saveCircuitBreakerState({ circuitBreaker: { agentKey: "legacy-agent", state: CircuitState.DISABLED } });
  await breakers.saveCircuitBreakerState({ circuitBreaker: { agentKey: "classifier-2", state: CircuitState.CLOSED } });
  for (const success of [true, true, false, true, true, true, false, false]) await breakers.recordCallOutcome({ agentKey: "classifier-2", success });

  // 96 decisions over the last day, busier in some hours than others, with
  // success rates that differ by agent.
  const rates: Record<string, number> = { "search-agent": 0.96, "summarizer-1": 0.5, translator: 0.75, "classifier-2": 0.9 };
  const types: Record<string, string> = { "search-agent": "search", "summarizer-1": "summarize", translator: "translate", "classifier-2": "classify" };
  const ages = PER_HOUR.flatMap((n, hour) => Array.from({ length: n }, (_, j) => (23 - hour) * 60 * MIN + ((n - j - 0.5) / n) * 60 * MIN));
  const decisions: RoutingDecision[] = Array.from({ length: 96 }, (_, i) => {
    const agent = AGENTS[i % 4]!;
    const others = AGENTS.filter((a) => a !== agent).slice(0, 1 + (i % 3));
    const score = (60 + ((i * 37) % 40)) / 100;
    return create(RoutingDecisionSchema, {
      taskId: `task-${1000 + i}`,
      taskType: types[agent],
      selectedAgent: agent,
      agentScore: score,
      candidates: [{ agentKey: agent, score }, ...others.map((a, j) => ({ agentKey: a, score: Math.round((score - 0.1 * (j + 1)) * 100) / 100 }))],
      success: (i * 7919) % 100 < rates[agent]! * 100,
      errorMessage: (i * 7919) % 100 < rates[agent]! * 100 ? "" : "agent timed out",
      routingDuration: seconds(0.002 + (i % 5) / 1000),
      taskDuration: seconds(0.4 + (i % 9) * 0.35),
      routedAt: ago(ages[i]!),
      workflowExecutionId: i % 3 === 0 ? "order-1042" : "",
    });
  });
  await authClient(RoutingAuditService, baseUrl, { key }).recordRoutingDecisions({ decisions, updateStatistics: true });

  const workflows = authClient(WorkflowStateService, baseUrl, { key });
  const definition = {
    name: "fulfil-order",
    version: "1.4.0",
    steps: [
      { stepId: "fetch", requiredCapability: "erp-read" },
      { stepId: "price", dependsOn: ["fetch"], requiredCapability: "pricing" },
      { stepId: "ship", dependsOn: ["price"], requiredCapability: "logistics" },
      { stepId: "notify", dependsOn: ["ship"], requiredCapability: "email" },
    ],
  };
  await workflows.saveWorkflowExecution({ execution: {
    executionId: "order-1042", workflowName: "fulfil-order", status: WorkflowStatus.RUNNING, definition, startedAt: ago(25 * MIN), initiatedBy: "shop-frontend",
    labels: { team: "fulfilment" },
    stepExecutions: [
      { stepId: "fetch", status: WorkflowStatus.COMPLETED, agentKey: "search-agent", attempt: 1, startedAt: ago(25 * MIN), completedAt: ago(23 * MIN) },
      { stepId: "price", status: WorkflowStatus.COMPLETED, agentKey: "classifier-2", attempt: 2, startedAt: ago(22 * MIN), completedAt: ago(15 * MIN) },
      { stepId: "ship", status: WorkflowStatus.RUNNING, agentKey: "translator", attempt: 1, startedAt: ago(14 * MIN) },
    ],
  } });
  await workflows.saveWorkflowExecution({ execution: {
    executionId: "order-1043", workflowName: "fulfil-order", status: WorkflowStatus.BLOCKED, definition, startedAt: ago(130 * MIN), initiatedBy: "shop-frontend",
    errorMessage: "waiting for stock",
    stepExecutions: [
      { stepId: "fetch", status: WorkflowStatus.COMPLETED, agentKey: "search-agent", attempt: 1, startedAt: ago(130 * MIN), completedAt: ago(128 * MIN) },
      { stepId: "price", status: WorkflowStatus.BLOCKED, agentKey: "summarizer-1", attempt: 3, startedAt: ago(127 * MIN), errorMessage: "no price list" },
    ],
  } });
  await workflows.saveWorkflowExecution({ execution: { executionId: "report-77", workflowName: "weekly-report", status: WorkflowStatus.PENDING, initiatedBy: "scheduler" } });
  // One replica holds order-1042 (the oldest incomplete ones are claimed first: order-1043, then order-1042).
  for await (const _ of workflows.claimIncompleteWorkflows({ owner: "replica-a", leaseDuration: { seconds: 600n }, workflowName: "fulfil-order", maxCount: 2 })) {
    // Reading to the end keeps every lease.
  }
  await workflows.saveWorkflowExecution({ execution: {
    executionId: "order-1001", workflowName: "fulfil-order", status: WorkflowStatus.COMPLETED, definition, startedAt: ago(300 * MIN), completedAt: ago(280 * MIN),
  } });
  return decisions;
}

/** Seeds the other tenant: every name starts with "beta". */
export async function seedOtherTenant(baseUrl: string, key: string): Promise<void> {
  const breakers = authClient(CircuitBreakerService, baseUrl, { key });
  await breakers.saveCircuitBreakerState({ circuitBreaker: { agentKey: "beta-agent", state: CircuitState.CLOSED, policy: { consecutiveFailureThreshold: 1 } } });
  await breakers.recordCallOutcome({ agentKey: "beta-agent", success: false });
  await authClient(RoutingAuditService, baseUrl, { key }).recordRoutingDecisions({
    decisions: Array.from({ length: 10 }, (_, i) => create(RoutingDecisionSchema, {
      taskId: `beta-task-${i}`, taskType: "beta-type", selectedAgent: "beta-agent", agentScore: 0.5, success: i % 2 === 0,
      candidates: [{ agentKey: "beta-agent", score: 0.5 }, { agentKey: "beta-other", score: 0.4 }],
      routedAt: ago(i * 20 * MIN), workflowExecutionId: "beta-order-1",
    })),
    updateStatistics: true,
  });
  await authClient(WorkflowStateService, baseUrl, { key }).saveWorkflowExecution({ execution: {
    executionId: "beta-order-1", workflowName: "beta-workflow", status: WorkflowStatus.RUNNING, startedAt: ago(10 * MIN),
    stepExecutions: [{ stepId: "beta-step", status: WorkflowStatus.RUNNING, agentKey: "beta-agent", startedAt: ago(9 * MIN) }],
  } });
}
