import * as http from "node:http";
import type { AddressInfo } from "node:net";
import type { Registry } from "prom-client";
import { HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/health/v1/health_pb.js";
import type { HealthService } from "../health/health-service.js";
import type { Logger } from "../logging/logger.js";

// The operations port (METRICS_PORT): plain HTTP/1.1 for Prometheus and for
// probes that do not speak gRPC, apart from the service's port so that it can
// be kept off the network clients reach. No authentication: it tells nothing a
// tenant may not know beyond tenant ids and agent keys in the agent outcome
// series, and changes nothing.
//
//   GET /metrics   Prometheus text exposition format (version 0.0.4)
//   GET /livez     200 while the process serves requests at all
//   GET /readyz    200 when grpc.health.v1 says SERVING for the server ("");
//                  503 otherwise (starting, database unreachable, draining)
//   GET /readyz?service=NAME  the same for one service, 404 if unknown
//
// /readyz answers from the same HealthService as grpc.health.v1.Health/Check,
// so the two never disagree; the body is that answer's status name.

/** A listening operations server. */
export interface OperationsServer {
  /** The bound port (useful with port 0). */
  readonly port: number;
  /** Stops listening and closes idle connections. */
  close(): Promise<void>;
}

/** Starts the operations server on `port` and `host`. */
export async function startOperationsServer(options: {
  port: number;
  host: string;
  registry: Registry;
  health: HealthService;
  logger: Logger;
}): Promise<OperationsServer> {
  const { registry, health, logger } = options;
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://operations");
    if (req.method !== "GET" && req.method !== "HEAD") {
      answer(res, 405, "text/plain; charset=utf-8", "method not allowed\n", { allow: "GET, HEAD" });
      return;
    }
    switch (url.pathname) {
      case "/metrics":
        registry.metrics().then(
          (text) => answer(res, 200, registry.contentType, text),
          (err: unknown) => {
            logger.error("metrics: could not collect", { error: err });
            answer(res, 500, "text/plain; charset=utf-8", "could not collect the metrics\n");
          },
        );
        return;
      case "/livez":
        answer(res, 200, "text/plain; charset=utf-8", "ok\n");
        return;
      case "/readyz": {
        const service = url.searchParams.get("service") ?? "";
        const status = health.status(service);
        if (status === undefined) {
          answer(res, 404, "text/plain; charset=utf-8", `unknown service: ${service}\n`);
          return;
        }
        answer(res, status === ServingStatus.SERVING ? 200 : 503, "text/plain; charset=utf-8", `${ServingStatus[status]}\n`);
        return;
      }
      default:
        answer(res, 404, "text/plain; charset=utf-8", "not found: try /metrics, /livez or /readyz\n");
    }
  });
  // Probes and scrapes are small: a slow or idle client is not kept for long.
  server.requestTimeout = 10_000;
  server.headersTimeout = 10_000;
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}

function answer(res: http.ServerResponse, status: number, contentType: string, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { "content-type": contentType, "cache-control": "no-store", ...headers });
  res.end(res.req.method === "HEAD" ? undefined : body);
}
