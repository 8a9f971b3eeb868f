import type * as http2 from "node:http2";
import type { DescMethod } from "@bufbuild/protobuf";
import { createServiceImplSpec } from "@connectrpc/connect";
import type { ServiceRegistration } from "../service-registration.js";
import {
  type Compression,
  compressionNegotiate,
  contentTypeProto,
  createMethodSerializationLookup,
  headerAcceptEncoding,
  parseTimeout,
  validateUniversalHandlerOptions,
} from "./connect-internals.js";
import { type FastPathState, GrpcUnaryCall, header, type Negotiated, type UnaryRoute } from "./unary-call.js";

// Which requests the fast path takes (a unary method of a registered service,
// in the gRPC protocol, uncompressed, with a valid grpc-timeout if any), and
// what each of its methods needs, built once.

/** The adapter options the fast path honours; pass the same values as to connectNodeAdapter. */
export interface GrpcFastPathOptions {
  /** The largest request of a method (Connect's readMaxBytes, per method: see src/server/server.ts). */
  readMaxBytesOf: (method: DescMethod) => number;
  shutdownSignal: AbortSignal;
  acceptCompression: Compression[];
}

/** Serves unary gRPC calls of registered services directly off their HTTP/2 streams. */
export interface GrpcFastPath {
  /**
   * Serves the call when it is one this path handles and returns true;
   * returns false, having touched nothing, for every other request.
   */
  serve(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): boolean;
  /** Calls served so far (tests check that gRPC unary calls take this path). */
  readonly served: number;
}

/**
 * Connect's compressionNegotiate for requests without compression, remembered
 * per grpc-accept-encoding value (a client sends the same one on every call).
 */
function createNegotiation(acceptCompression: Compression[]): (acceptEncoding: string | null) => Negotiated {
  const known = new Map<string | null, Negotiated>();
  return (acceptEncoding) => {
    const remembered = known.get(acceptEncoding);
    if (remembered !== undefined) return remembered;
    const compression = compressionNegotiate(acceptCompression, null, acceptEncoding, headerAcceptEncoding).response;
    const responseHeader: Record<string, string> = { "content-type": contentTypeProto };
    if (compression !== null) responseHeader["grpc-encoding"] = compression.name;
    const negotiated = { compression, responseHeader: Object.freeze(responseHeader) };
    if (known.size < 100) known.set(acceptEncoding, negotiated);
    return negotiated;
  };
}

const GRPC_CONTENT_TYPES = new Set(["application/grpc", "application/grpc+proto"]);

/** Builds the fast path for the unary methods of `services`. */
export function createFastPathRoutes(services: readonly ServiceRegistration[], options: GrpcFastPathOptions): GrpcFastPath {
  // Connect's defaults (writeMaxBytes, compressMinBytes, maxTimeoutMs) for the options we leave unset.
  const opt = validateUniversalHandlerOptions({ shutdownSignal: options.shutdownSignal, acceptCompression: options.acceptCompression });
  const routes = new Map<string, UnaryRoute>();
  for (const { service, impl, options: serviceOptions, admission } of services) {
    const spec = createServiceImplSpec(service, impl);
    for (const method of Object.values(spec.methods)) {
      if (method.kind !== "unary") continue;
      const readMaxBytes = options.readMaxBytesOf(method.method);
      const serialization = createMethodSerializationLookup(method.method, undefined, undefined, { ...opt, readMaxBytes });
      routes.set(`/${service.typeName}/${method.method.name}`, {
        spec: method,
        interceptors: serviceOptions.interceptors,
        admission,
        readMaxBytes,
        input: serialization.getI(true),
        output: serialization.getO(true),
      });
    }
  }

  const state: FastPathState = { opt, inFlight: new Set(), negotiate: createNegotiation(opt.acceptCompression) };
  // One listener for every call in flight (Connect links each call's signal to it).
  opt.shutdownSignal?.addEventListener("abort", () => {
    for (const call of state.inFlight) call.abort(opt.shutdownSignal!.reason);
  });
  const fastPath = {
    served: 0,
    serve(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): boolean {
      if (headers[":method"] !== "POST") return false;
      const route = routes.get(headers[":path"] ?? "");
      if (route === undefined) return false;
      const contentType = headers["content-type"];
      if (contentType === undefined || !GRPC_CONTENT_TYPES.has(contentType)) return false;
      const encoding = headers["grpc-encoding"];
      if (encoding !== undefined && encoding !== "identity") return false;
      let timeoutMs: number | undefined;
      if (headers["grpc-timeout"] !== undefined) {
        const timeout = parseTimeout(header(headers, "grpc-timeout"), opt.maxTimeoutMs);
        if (timeout.error !== undefined) return false;
        timeoutMs = timeout.timeoutMs;
      }
      fastPath.served++;
      // Decided from the headers, before a byte of the body is read (admission.ts).
      const verdict = route.admission.check(route.spec.method, (name) => header(headers, name));
      new GrpcUnaryCall(stream, headers, route, timeoutMs, state, verdict);
      return true;
    },
  };
  return fastPath;
}
