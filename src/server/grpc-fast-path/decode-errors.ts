import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import type { UniversalServerResponse } from "@connectrpc/connect/protocol";
import { requestDecodeError } from "../../errors/request-decoding.js";
import { wrapUnaryHandlers } from "../unary-handlers.js";
import {
  codeToHttpStatus,
  errorFromJsonBytes,
  errorToJsonBytes,
  findTrailerError,
  headerGrpcMessage,
  headerGrpcStatus,
  headerStatusDetailsBin,
  setTrailerStatus,
  trailerFlag,
  trailerParse,
  trailerSerialize,
} from "./connect-internals.js";

// An undecodable unary request (see requestDecodeError in
// src/errors/request-decoding.ts: Connect says INTERNAL, we say
// INVALID_ARGUMENT) answered on the wire of each protocol. Connect decodes a
// unary request before any interceptor runs, so its answer is rewritten
// after the handler: in Connect's handlers (withRequestDecodeErrors) and on
// the fast path (rewriteGrpcTrailer) alike.

/**
 * Wraps a routes function so that every unary method it registers answers an
 * undecodable request with INVALID_ARGUMENT (see requestDecodeError), in each
 * protocol: gRPC (trailer), gRPC-Web (trailer frame) and Connect (JSON error).
 */
export function withRequestDecodeErrors(routes: (router: ConnectRouter) => void): (router: ConnectRouter) => void {
  return wrapUnaryHandlers(routes, (h) => async (req) => rewrite(await h(req)));
}

async function rewrite(res: UniversalServerResponse): Promise<UniversalServerResponse> {
  const contentType = res.header?.get("content-type") ?? "";
  if (contentType.startsWith("application/grpc-web")) {
    return res.body === undefined ? res : { ...res, body: rewriteGrpcWebTrailer(res.body) };
  }
  if (contentType.startsWith("application/grpc")) {
    // The trailer is complete when the handler resolves with an error before
    // any output; otherwise it is written after the body: check both times.
    const trailer = res.trailer;
    if (trailer === undefined) return res;
    rewriteGrpcTrailer(trailer);
    return res.body === undefined ? res : { ...res, body: afterEnd(res.body, () => rewriteGrpcTrailer(trailer)) };
  }
  if (res.status === 500 && contentType === "application/json" && res.body !== undefined && res.header !== undefined) {
    return rewriteConnectError(res, res.header, res.body);
  }
  return res;
}

/**
 * Rewrites a gRPC trailer (or a gRPC-Web trailer frame's fields) in place when
 * it carries Connect's INTERNAL for undecodable request bytes: it then says
 * INVALID_ARGUMENT (see requestDecodeError). Other trailers are left alone.
 */
export function rewriteGrpcTrailer(trailer: Headers): void {
  const found = findTrailerError(trailer);
  const replacement = found === undefined ? undefined : requestDecodeError(found);
  if (replacement === undefined) return;
  trailer.delete(headerGrpcStatus);
  trailer.delete(headerGrpcMessage);
  trailer.delete(headerStatusDetailsBin);
  setTrailerStatus(trailer, replacement);
}

async function* afterEnd(body: AsyncIterable<Uint8Array>, then: () => void): AsyncIterable<Uint8Array> {
  yield* body;
  then();
}

// gRPC-Web carries the trailer as the last frame of the body: flag 0x80, then
// HTTP/1-style header lines. Error trailers are small and never compressed.
async function* rewriteGrpcWebTrailer(body: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> {
  for await (const chunk of body) {
    const isUncompressedTrailerFrame =
      chunk.byteLength >= 5 &&
      chunk[0] === trailerFlag &&
      new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength).getUint32(1) === chunk.byteLength - 5;
    if (!isUncompressedTrailerFrame) {
      yield chunk;
      continue;
    }
    const trailer = trailerParse(chunk.subarray(5));
    const before = trailer.get(headerGrpcStatus);
    rewriteGrpcTrailer(trailer);
    yield trailer.get(headerGrpcStatus) === before ? chunk : frame(trailerFlag, trailerSerialize(trailer));
  }
}

function frame(flags: number, data: Uint8Array): Uint8Array {
  const bytes = new Uint8Array(data.byteLength + 5);
  const view = new DataView(bytes.buffer);
  view.setUint8(0, flags);
  view.setUint32(1, data.byteLength);
  bytes.set(data, 5);
  return bytes;
}

// A Connect unary error: an HTTP status and a small JSON body.
async function rewriteConnectError(
  res: UniversalServerResponse,
  header: Headers,
  body: AsyncIterable<Uint8Array>,
): Promise<UniversalServerResponse> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of body) chunks.push(chunk);
  const bytes = Buffer.concat(chunks);
  const replay = { ...res, body: (async function* () { yield bytes; })() };
  if (header.has("content-encoding")) return replay;
  const found = errorFromJsonBytes(bytes, undefined, new ConnectError("unparseable error", Code.Unknown));
  const replacement = requestDecodeError(found);
  if (replacement === undefined) return replay;
  const json = errorToJsonBytes(replacement, undefined);
  const newHeader = new Headers(header);
  newHeader.set("content-length", String(json.byteLength));
  return { ...res, status: codeToHttpStatus(replacement.code), header: newHeader, body: (async function* () { yield json; })() };
}
