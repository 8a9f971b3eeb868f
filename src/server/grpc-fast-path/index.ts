// The gRPC unary fast path: one sealed module, entered only through this
// file. installGrpcFastPath puts it in front of Connect's adapter on a
// node:http2 server; src/server/server.ts does so unless GRPC_FAST_PATH=false
// (src/config.ts). Its contract is test/server/grpc-fast-path.test.ts: every
// answer the same, byte for byte, as Connect's own gRPC handler gives.
//
// What it relies on beyond public APIs, all pinned and checked on upgrade
// (test/contract/pinned-internals.test.ts):
// - Connect's @private protocol helpers, imported only in connect-internals.ts
//   (@connectrpc/connect and connect-node pinned to exactly 2.1.2); the
//   rewrite of undecodable requests for Connect's own handlers
//   (decode-errors.ts, withRequestDecodeErrors) uses the same trailer helpers,
//   so it lives here too, and recognises @bufbuild/protobuf's decode error
//   texts (pinned to exactly 2.17.0);
// - what it mirrors of Connect without calling it: the handler context and
//   interceptor chain (handler-call.ts), the request headers
//   (request-headers.ts), the envelope reader (request-envelopes.ts) and
//   connect-node's reset codes (reset-codes.ts);
// - node:http2 installing its compatibility layer as the server's only
//   "stream" listener when given a request listener (below).
//
// Why it exists (issue 6, B0: our stack at least 0.8 of bare @grpc/grpc-js
// on a no-op unary RPC; grpc.health.v1.Health/Check through our interceptors,
// server on core 0, h2load on core 1, one connection, 32 calls in flight).
//
// Connect-Node serves even a unary gRPC call through its streaming machinery:
// node:http2's compatibility request and response objects, an async-generator
// pipeline over the body (split, decompress, parse, invoke, serialize,
// compress, join, catch), two AbortControllers per call aborted at the end
// without a reason (a DOMException with a stack trace each), header
// conversions both ways. That came to 0.08-0.2 of grpc-js's calls/s (about
// 700 µs of CPU per call against 60-110 µs on this shared machine); no
// configuration came near 0.8 (without logging, the decode-error rewriting,
// the shutdown signal, compression or any interceptor at all, Connect stayed
// at 0.15-0.2). Its profile: 16% garbage collection, 11% the async-iterable
// pipeline, 5% DOMException creation, 3% AbortController work, the rest thin.
//
// This path serves the common case, a unary call in the gRPC protocol
// (`application/grpc` or `application/grpc+proto`, an uncompressed request)
// straight off the HTTP/2 stream: it reads the one enveloped message and runs
// the same ServiceImpl method through the same per-service interceptors
// (handler-call.ts: Connect's handler context and interceptor chain, made
// lazily), with Connect's own pieces where they are cheap: its serialization
// with readMaxBytes, parseTimeout, compressionNegotiate and envelopeCompress,
// setTrailerStatus, and the rewrite of undecodable requests Connect's own
// handlers get too (decode-errors.ts). Headers, the enveloped answer and the
// trailers go out as from Connect's gRPC handler. Everything
// else goes to Connect unchanged: streaming methods, gRPC-Web, the Connect
// protocol, `application/grpc+json`, compressed requests, an invalid
// grpc-timeout, HTTP/1.1, unknown paths. Measured the same way (on a machine
// shared with other load: ratios of runs back to back), our server then
// answered 1.11 of grpc-js's calls/s (median of 8 rounds; about 10,000-13,000
// calls/s each) when the machine was quiet, and 0.65-1.15 (medians of five
// sessions) under heavy load from other processes; 0.83-1.09 with both
// servers loaded at once on the same core. What mattered besides skipping the
// pipeline: no per-call object literal with getters (each got a hidden class
// of its own; garbage collection fell from 20% of the time to 3%), no
// AbortSignal and no Headers unless something reads them, and in our
// interceptors the one-shot SHA-256 (src/auth/key-store.ts) and one stdout
// write per event-loop turn (src/logging/logger.ts). Method and the latest
// figures: docs/performance.md (B0).

import type * as http2 from "node:http2";
import { joinRepeatedAuthorization } from "../repeated-authorization.js";
import type { ServiceRegistration } from "../service-registration.js";
import { createFastPathRoutes, type GrpcFastPath, type GrpcFastPathOptions } from "./routes.js";

export type { GrpcFastPath, GrpcFastPathOptions } from "./routes.js";
export { withRequestDecodeErrors } from "./decode-errors.js";

/**
 * Serves the unary gRPC calls of `services` straight off the HTTP/2 streams of
 * `server`, before node:http2's compatibility layer (which turns streams into
 * the request events Connect's adapter handles) sees them; every other
 * stream reaches that layer as before. HTTP/1.1 requests (TLS with
 * allowHTTP1) never arrive as streams: unchanged. Call it once, right after
 * creating the server with Connect's adapter as its request listener, with
 * the same services and options as that adapter.
 */
export function installGrpcFastPath(
  server: http2.Http2Server | http2.Http2SecureServer,
  services: readonly ServiceRegistration[],
  options: GrpcFastPathOptions,
): GrpcFastPath {
  // node:http2 installs its compatibility layer as a "stream" listener when a
  // request listener is given; it must be the only one, so that a stream
  // taken here is not also answered there.
  const compat = server.listeners("stream") as ((...args: unknown[]) => void)[];
  if (compat.length !== 1) {
    throw new Error(`expected node:http2's compatibility layer as the only "stream" listener, found ${compat.length}`);
  }
  const fastPath = createFastPathRoutes(services, options);
  const toCompat = compat[0]!;
  server.removeAllListeners("stream");
  server.on("stream", function (this: unknown, stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, ...rest: unknown[]) {
    // rest: flags, rawHeaders. The compatibility layer's request shares
    // `headers`, so both paths see several authorization fields joined.
    joinRepeatedAuthorization(headers, rest[1] as string[] | undefined);
    if (!fastPath.serve(stream, headers)) toCompat.call(this, stream, headers, ...rest);
  });
  return fastPath;
}
