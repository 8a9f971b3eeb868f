import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import type { UniversalHandler, UniversalServerRequest, UniversalServerResponse } from "@connectrpc/connect/protocol";
import { codeToHttpStatus, errorFromJsonBytes, errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import {
  findTrailerError,
  headerGrpcMessage,
  headerGrpcStatus,
  headerStatusDetailsBin,
  setTrailerStatus,
} from "@connectrpc/connect/protocol-grpc";
import { trailerFlag, trailerParse, trailerSerialize } from "@connectrpc/connect/protocol-grpc-web";

// How a request that cannot be decoded is answered.
//
// Connect-ES answers a request body that is not a valid protobuf message
// (truncated, a wrong wire type, a string that is not UTF-8, nesting past the
// decoder's recursion limit) or not a valid compressed envelope with INTERNAL
// ("parse binary: ..."), the code of a server bug; a malformed JSON body it
// already answers with INVALID_ARGUMENT. The client sent the bad bytes, so we
// answer INVALID_ARGUMENT, like every other malformed input. For a streaming
// method the error reaches the error interceptor (Connect decodes the request
// inside the interceptor chain); for a unary method it is decoded before any
// interceptor runs, so withRequestDecodeErrors rewrites its response.
//
// JSON bodies are decoded with a fatal UTF-8 decoder (`strictJsonOptions`):
// Connect's default decoder silently replaces invalid bytes with U+FFFD, which
// would then be stored as if the client had sent it.

// Messages of the ConnectErrors Connect raises with Code.Internal for bad request bytes.
const DECODE_FAILURES: readonly RegExp[] = [
  /^parse binary: /,
  /^received compressed envelope, but do not know how to decompress$/,
  /^decompression failed$/,
];
const UTF8_FAILURE = /not valid for encoding utf-8/i;

/**
 * The INVALID_ARGUMENT a client should get instead of `err`, when `err` is
 * Connect's INTERNAL for request bytes it could not decode; otherwise undefined.
 */
export function requestDecodeError(err: ConnectError): ConnectError | undefined {
  if (err.code !== Code.Internal || !DECODE_FAILURES.some((p) => p.test(err.rawMessage))) return undefined;
  const detail = UTF8_FAILURE.test(err.rawMessage)
    ? "a string field is not valid UTF-8"
    : err.rawMessage.replace(/^parse binary: /, "");
  return new ConnectError(`the request is not a valid protobuf message: ${detail}`, Code.InvalidArgument, undefined, undefined, err);
}

/** JSON decoding options: invalid UTF-8 in a JSON body is INVALID_ARGUMENT, not silently U+FFFD. */
export const strictJsonOptions = {
  // Connect's default (unknown JSON fields are ignored), spelled out.
  ignoreUnknownFields: true,
  textDecoder: {
    decode(input?: Uint8Array): string {
      try {
        return fatalUtf8.decode(input);
      } catch {
        throw new ConnectError("the request body is not valid UTF-8", Code.InvalidArgument);
      }
    },
  },
};
const fatalUtf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Wraps a routes function so that every unary method it registers answers an
 * undecodable request with INVALID_ARGUMENT (see requestDecodeError), in each
 * protocol: gRPC (trailer), gRPC-Web (trailer frame) and Connect (JSON error).
 */
export function withRequestDecodeErrors(routes: (router: ConnectRouter) => void): (router: ConnectRouter) => void {
  return (router) => {
    routes(router);
    router.handlers.forEach((h, i) => {
      if (h.method.methodKind === "unary") router.handlers[i] = wrapUnary(h);
    });
  };
}

function wrapUnary(h: UniversalHandler): UniversalHandler {
  const handle = async (req: UniversalServerRequest): Promise<UniversalServerResponse> => rewrite(await h(req));
  return Object.assign(handle, {
    protocolNames: h.protocolNames,
    service: h.service,
    method: h.method,
    requestPath: h.requestPath,
    allowedMethods: h.allowedMethods,
    supportedContentType: h.supportedContentType,
  });
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
