import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

// Every series the server exports, declared once (README "Metrics" lists
// them). The gRPC series keep the names and labels of go-grpc-prometheus, so
// that dashboards and alerts written for Go services work unchanged; the
// others are prefixed `orchestrator_state_`. Every label has a bounded set of
// values: methods, codes, states and statuses of the contract, and (tenant,
// agent) pairs only up to a configured number.

/** A metric's label names, typed. */
type Labels<T extends string> = Record<T, string>;

/** Hears a task outcome reported for an agent: RoutingAuditService and StatisticsService tell Metrics.agentOutcome. */
export type TaskOutcomeListener = (tenant: string, agent: string, success: boolean) => void;

/** The series of one server, in a registry of their own (tests build several servers in one process). */
export interface Metrics {
  readonly registry: Registry;
  /** RPCs started, by method (go-grpc-prometheus). */
  readonly rpcStarted: Counter<RpcLabel>;
  /** RPCs finished, by method and status code. */
  readonly rpcHandled: Counter<RpcLabel | "grpc_code">;
  /** Time from the start of an RPC to its end, seconds. */
  readonly rpcHandlingSeconds: Histogram<RpcLabel>;
  /** Request messages received. */
  readonly rpcMsgReceived: Counter<RpcLabel>;
  /** Response messages sent. */
  readonly rpcMsgSent: Counter<RpcLabel>;
  /** Decisions written per group-commit batch of RecordRoutingDecision. */
  readonly routingDecisionBatchSize: Histogram<never>;
  /** Task outcomes added to agent statistics, by tenant, agent and outcome (bounded: see agentOutcome). */
  readonly agentTaskOutcomes: Counter<"tenant" | "agent" | "outcome">;
  /** Rows deleted by retention (background passes and ApplyRetentionPolicy). */
  readonly retentionDeleted: Counter<"resource" | "status">;
  /** Background retention passes, by outcome. */
  readonly retentionRuns: Counter<"outcome">;
  /** When the last background retention pass completed (Unix seconds). */
  readonly retentionLastCompleted: Gauge<never>;
  /**
   * Counts one task outcome for an agent. The first `maxAgentSeries`
   * (tenant, agent) pairs seen get series of their own; later ones are
   * counted under tenant and agent "_other", so the series stay bounded
   * whatever callers send.
   */
  agentOutcome(tenant: string, agent: string, success: boolean): void;
}

/** The labels of every gRPC series. */
export type RpcLabel = "grpc_type" | "grpc_service" | "grpc_method";

/** Label value standing for every (tenant, agent) pair past the limit. */
export const OTHER = "_other";

/** Creates the series, with Node's process metrics (CPU, memory, event loop, GC). */
export function createMetrics(options: { maxAgentSeries: number }): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];
  const rpcLabels: RpcLabel[] = ["grpc_type", "grpc_service", "grpc_method"];
  const agentTaskOutcomes = new Counter({
    name: "orchestrator_state_agent_task_outcomes_total",
    help: "Task outcomes added to agent statistics (RecordTaskOutcome, and routing decisions recorded with update_statistics), by tenant, agent and outcome (success or failure).",
    labelNames: ["tenant", "agent", "outcome"] as const,
    registers,
  });
  const agents = new Set<string>();
  return {
    registry,
    rpcStarted: new Counter({
      name: "grpc_server_started_total",
      help: "Total number of RPCs started on the server.",
      labelNames: rpcLabels,
      registers,
    }),
    rpcHandled: new Counter({
      name: "grpc_server_handled_total",
      help: "Total number of RPCs completed on the server, regardless of success or failure.",
      labelNames: [...rpcLabels, "grpc_code"],
      registers,
    }),
    rpcHandlingSeconds: new Histogram({
      name: "grpc_server_handling_seconds",
      help: "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
      labelNames: rpcLabels,
      // Prometheus's default buckets, with two below 5 ms: most calls here take about a millisecond.
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    rpcMsgReceived: new Counter({
      name: "grpc_server_msg_received_total",
      help: "Total number of RPC stream messages received on the server.",
      labelNames: rpcLabels,
      registers,
    }),
    rpcMsgSent: new Counter({
      name: "grpc_server_msg_sent_total",
      help: "Total number of gRPC stream messages sent by the server.",
      labelNames: rpcLabels,
      registers,
    }),
    routingDecisionBatchSize: new Histogram({
      name: "orchestrator_state_routing_decision_batch_size",
      help: "Decisions written per group-commit batch of RecordRoutingDecision (one INSERT and one commit each).",
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
      registers,
    }),
    agentTaskOutcomes,
    retentionDeleted: new Counter({
      name: "orchestrator_state_retention_deleted_total",
      help: "Rows deleted by retention, by resource (workflow_execution, routing_decision, circuit_breaker, circuit_breaker_transition) and, for executions, status.",
      labelNames: ["resource", "status"] as const,
      registers,
    }),
    retentionRuns: new Counter({
      name: "orchestrator_state_retention_runs_total",
      help: "Background retention passes, by outcome: completed, skipped (another replica was running one), failed.",
      labelNames: ["outcome"] as const,
      registers,
    }),
    retentionLastCompleted: new Gauge({
      name: "orchestrator_state_retention_last_completed_timestamp_seconds",
      help: "When this replica last completed a background retention pass (Unix time, seconds).",
      registers,
    }),
    agentOutcome(tenant, agent, success) {
      const key = `${tenant}\u0000${agent}`;
      const own = agents.has(key) || (agents.size < options.maxAgentSeries && agents.add(key) !== undefined);
      const labels: Labels<"tenant" | "agent" | "outcome"> = {
        tenant: own ? tenant : OTHER,
        agent: own ? agent : OTHER,
        outcome: success ? "success" : "failure",
      };
      agentTaskOutcomes.inc(labels);
    },
  };
}
