import type * as http2 from "node:http2";
import { type Client, createClient, type Interceptor } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
  Http2SessionManager,
} from "@connectrpc/connect-node";
import { CircuitBreakerService } from "../../gen/orchestration/state/v1/circuit_breaker_service_pb.js";
import { RoutingAuditService } from "../../gen/orchestration/state/v1/routing_audit_service_pb.js";
import { StatisticsService } from "../../gen/orchestration/state/v1/statistics_service_pb.js";
import { WorkflowStateService } from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";

/** Options of {@link createStateClients}. */
export interface StateClientOptions {
  /** The server, e.g. `http://127.0.0.1:50051` (h2c) or `https://state.example.internal:50051` (TLS). */
  baseUrl: string;
  /**
   * The tenant every call acts for (a UUID), sent as `x-tenant-id`. May be
   * left out with an API key, which names its tenant.
   */
  tenantId?: string;
  /** The API key, sent as `authorization: Bearer <key>`. Leave it out for a server in development mode. */
  apiKey?: string;
  /** Wire protocol, over HTTP/2: `grpc` (the default), `connect` or `grpc-web`. */
  protocol?: "grpc" | "connect" | "grpc-web";
  /** Deadline of every call without its own `timeoutMs`, in milliseconds. Default: none. */
  defaultTimeoutMs?: number;
  /** Interceptors run around every call, after the one that adds the headers above. */
  interceptors?: Interceptor[];
  /** Options of Node's `http2.connect()`: `ca` to trust a private CA, for instance. */
  nodeOptions?: http2.ClientSessionOptions | http2.SecureClientSessionOptions;
}

/** Typed clients of the four services, sharing one HTTP/2 connection. */
export interface StateClients {
  readonly workflowState: Client<typeof WorkflowStateService>;
  readonly circuitBreakers: Client<typeof CircuitBreakerService>;
  readonly routingAudit: Client<typeof RoutingAuditService>;
  readonly statistics: Client<typeof StatisticsService>;
  /** Closes the connection; calls in flight fail with CANCELED. An idle connection never keeps Node running. */
  close(): void;
}

/**
 * Creates clients of orchestrator-state for a Node orchestrator, acting for one
 * tenant: every call carries `x-tenant-id` and `authorization` as the options
 * say.
 */
export function createStateClients(options: StateClientOptions): StateClients {
  const { baseUrl, tenantId, apiKey } = options;
  if (tenantId === undefined && apiKey === undefined) {
    // Every call would answer INVALID_ARGUMENT or UNAUTHENTICATED.
    throw new Error("createStateClients: set tenantId, apiKey, or both");
  }
  const headers: Interceptor = (next) => (req) => {
    if (tenantId !== undefined) req.header.set("x-tenant-id", tenantId);
    if (apiKey !== undefined) req.header.set("authorization", `Bearer ${apiKey}`);
    return next(req);
  };
  const sessionManager = new Http2SessionManager(baseUrl, {}, options.nodeOptions);
  const transportOptions = {
    baseUrl,
    httpVersion: "2" as const,
    sessionManager,
    interceptors: [headers, ...(options.interceptors ?? [])],
    ...(options.defaultTimeoutMs === undefined ? {} : { defaultTimeoutMs: options.defaultTimeoutMs }),
  };
  const protocol = options.protocol ?? "grpc";
  const transport =
    protocol === "grpc"
      ? createGrpcTransport(transportOptions)
      : protocol === "connect"
        ? createConnectTransport(transportOptions)
        : createGrpcWebTransport(transportOptions);
  return {
    workflowState: createClient(WorkflowStateService, transport),
    circuitBreakers: createClient(CircuitBreakerService, transport),
    routingAudit: createClient(RoutingAuditService, transport),
    statistics: createClient(StatisticsService, transport),
    close: () => sessionManager.abort(),
  };
}
