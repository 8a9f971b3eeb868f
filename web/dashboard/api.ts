import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { CircuitBreakerService } from "../../gen/orchestration/state/v1/circuit_breaker_service_pb.js";
import { RoutingAuditService } from "../../gen/orchestration/state/v1/routing_audit_service_pb.js";
import { StatisticsService } from "../../gen/orchestration/state/v1/statistics_service_pb.js";
import { WorkflowStateService } from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";

/** What the page sends with every call: an API key, or in development mode a tenant id. */
export interface Credentials {
  apiKey?: string;
  tenantId?: string;
}

/** Clients of the four services, all speaking the Connect protocol to the page's own origin. */
export interface Api {
  breakers: Client<typeof CircuitBreakerService>;
  audit: Client<typeof RoutingAuditService>;
  statistics: Client<typeof StatisticsService>;
  workflows: Client<typeof WorkflowStateService>;
}

/**
 * The service's public RPCs, called from the browser with connect-web. The
 * server serves this page and the RPCs on the same origin, so there is no
 * CORS, and the API key travels only in the `authorization` header.
 */
export function createApi(credentials: Credentials): Api {
  const headers: Interceptor = (next) => (req) => {
    if (credentials.apiKey !== undefined) req.header.set("authorization", `Bearer ${credentials.apiKey}`);
    if (credentials.tenantId !== undefined) req.header.set("x-tenant-id", credentials.tenantId);
    return next(req);
  };
  const transport = createConnectTransport({ baseUrl: location.origin, interceptors: [headers] });
  return {
    breakers: createClient(CircuitBreakerService, transport),
    audit: createClient(RoutingAuditService, transport),
    statistics: createClient(StatisticsService, transport),
    workflows: createClient(WorkflowStateService, transport),
  };
}

/** An error as shown on the page: the server's message and its gRPC code. */
export function errorText(err: unknown): string {
  const e = ConnectError.from(err);
  const code = Code[e.code].replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
  return `${e.rawMessage} (${code})`;
}

/** Whether the server refused the credentials themselves: the page then asks for them again. */
export function isAuthFailure(err: unknown): boolean {
  const code = ConnectError.from(err).code;
  return code === Code.Unauthenticated || code === Code.PermissionDenied;
}
