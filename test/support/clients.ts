import * as path from "node:path";
import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { WorkflowStateService } from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { TENANT_HEADER } from "../../src/tenancy/tenant-interceptor.js";

/** Wire protocols a Connect client can speak. */
export type Protocol = "grpc" | "grpc-web" | "connect";

/** Every protocol in both codecs: [protocol, codec name, useBinaryFormat]. */
export const PROTOCOL_CODECS: readonly [Protocol, string, boolean][] = [
  ["grpc", "binary", true],
  ["grpc", "JSON", false],
  ["grpc-web", "binary", true],
  ["grpc-web", "JSON", false],
  ["connect", "binary", true],
  ["connect", "JSON", false],
];

/** Interceptor adding the tenant header to every call (undefined: no header). */
function tenantHeader(tenant: string | undefined): Interceptor {
  return (next) => (req) => {
    if (tenant !== undefined) req.header.set(TENANT_HEADER, tenant);
    return next(req);
  };
}

/**
 * A Connect transport over HTTP/2 speaking `protocol` to `baseUrl`, with
 * `interceptors` (the headers a test sends). `useBinaryFormat` picks the codec
 * (default: the transport's own, binary for gRPC and gRPC-Web, JSON for Connect).
 */
export function protocolTransport(baseUrl: string, protocol: Protocol, interceptors: Interceptor[], useBinaryFormat?: boolean): Transport {
  const options = { baseUrl, httpVersion: "2" as const, interceptors, ...(useBinaryFormat === undefined ? {} : { useBinaryFormat }) };
  return protocol === "grpc"
    ? createGrpcTransport(options)
    : protocol === "grpc-web"
      ? createGrpcWebTransport(options)
      : createConnectTransport(options);
}

/** A Connect client of one of our services, acting for `tenant`, over HTTP/2 (see protocolTransport). */
export function connectClient<S extends Parameters<typeof createClient>[0]>(
  service: S,
  baseUrl: string,
  tenant: string | undefined,
  protocol: Protocol = "grpc",
  useBinaryFormat?: boolean,
): Client<S> {
  return createClient(service, protocolTransport(baseUrl, protocol, [tenantHeader(tenant)], useBinaryFormat));
}

/** A Connect gRPC client of WorkflowStateService. */
export function workflowClient(baseUrl: string, tenant: string | undefined, protocol: Protocol = "grpc", useBinaryFormat?: boolean) {
  return connectClient(WorkflowStateService, baseUrl, tenant, protocol, useBinaryFormat);
}

/**
 * The independent client: @grpc/grpc-js with the service definitions loaded at
 * run time from proto/ by @grpc/proto-loader (no generated code shared with the
 * server), to prove wire compatibility. `files` are paths under proto/; by
 * default WorkflowStateService's.
 */
export function grpcJsPackage(files: readonly string[] = ["orchestration/state/v1/workflow_state_service.proto"]): grpc.GrpcObject {
  const root = path.resolve(import.meta.dirname, "../../proto");
  const definition = protoLoader.loadSync(
    [...files],
    { includeDirs: [root], keepCase: true, longs: String, enums: String, defaults: true, oneofs: true },
  );
  return grpc.loadPackageDefinition(definition);
}

/** Metadata carrying the tenant header, for grpc-js calls. */
export function tenantMetadata(tenant: string): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set(TENANT_HEADER, tenant);
  return md;
}
