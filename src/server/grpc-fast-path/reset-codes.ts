import { Code, ConnectError } from "@connectrpc/connect";

/**
 * The reason a stream closed by the client gives the handler's signal,
 * mirroring connect-node's connectErrorFromH2ResetCode (not exported; the
 * pinned-internals test compares the two for every code): CANCEL is
 * CANCELED, REFUSED_STREAM UNAVAILABLE, and so on; undefined (an AbortError)
 * for a stream that closed without an error code, or with one Connect does
 * not map (STREAM_CLOSED).
 */
export function errorFromResetCode(rstCode: number | undefined): ConnectError | undefined {
  const code = rstCode === undefined ? undefined : CODE_OF_RESET.get(rstCode);
  if (code === undefined) return undefined;
  return new ConnectError(`http/2 stream closed with error code ${RESET_NAMES[rstCode!]} (0x${rstCode!.toString(16)})`, code);
}

// HTTP/2 error codes (RFC 9113, section 7), named by their number.
const RESET_NAMES = [
  "NO_ERROR",
  "PROTOCOL_ERROR",
  "INTERNAL_ERROR",
  "FLOW_CONTROL_ERROR",
  "SETTINGS_TIMEOUT",
  "STREAM_CLOSED",
  "FRAME_SIZE_ERROR",
  "REFUSED_STREAM",
  "CANCEL",
  "COMPRESSION_ERROR",
  "CONNECT_ERROR",
  "ENHANCE_YOUR_CALM",
  "INADEQUATE_SECURITY",
  "HTTP_1_1_REQUIRED",
] as const;

// The code Connect gives a call whose stream was reset (NO_ERROR and STREAM_CLOSED: none).
const CODE_OF_RESET = new Map<number, Code>([
  ...[1, 2, 3, 4, 6, 9, 10].map((n) => [n, Code.Internal] as const),
  [7, Code.Unavailable],
  [8, Code.Canceled],
  [11, Code.ResourceExhausted],
  [12, Code.PermissionDenied],
  [13, Code.PermissionDenied],
]);
