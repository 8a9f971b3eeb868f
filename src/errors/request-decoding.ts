import { Code, ConnectError } from "@connectrpc/connect";

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
// interceptor runs, so withRequestDecodeErrors rewrites its response, on the
// wire of each protocol (src/server/grpc-fast-path/decode-errors.ts).
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
