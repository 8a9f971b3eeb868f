import * as http2 from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";

/**
 * The reason a stream closed by the client gives the handler's signal,
 * mirroring connect-node's connectErrorFromH2ResetCode (not exported): CANCEL
 * is CANCELED, REFUSED_STREAM UNAVAILABLE, and so on; undefined (an
 * AbortError) for a stream that closed without an error code.
 */
export function errorFromResetCode(rstCode: number | undefined): ConnectError | undefined {
  const c = http2.constants;
  let code: Code | undefined;
  switch (rstCode) {
    case c.NGHTTP2_PROTOCOL_ERROR:
    case c.NGHTTP2_INTERNAL_ERROR:
    case c.NGHTTP2_FLOW_CONTROL_ERROR:
    case c.NGHTTP2_SETTINGS_TIMEOUT:
    case c.NGHTTP2_FRAME_SIZE_ERROR:
    case c.NGHTTP2_COMPRESSION_ERROR:
    case c.NGHTTP2_CONNECT_ERROR:
      code = Code.Internal;
      break;
    case c.NGHTTP2_REFUSED_STREAM:
      code = Code.Unavailable;
      break;
    case c.NGHTTP2_CANCEL:
      code = Code.Canceled;
      break;
    case c.NGHTTP2_ENHANCE_YOUR_CALM:
      code = Code.ResourceExhausted;
      break;
    case c.NGHTTP2_INADEQUATE_SECURITY:
    case c.NGHTTP2_HTTP_1_1_REQUIRED:
      code = Code.PermissionDenied;
      break;
  }
  if (code === undefined || rstCode === undefined) return undefined;
  return new ConnectError(`http/2 stream closed with error code ${RESET_CODE_NAMES[rstCode]} (0x${rstCode.toString(16)})`, code);
}

const RESET_CODE_NAMES: Record<number, string> = {
  1: "PROTOCOL_ERROR",
  2: "INTERNAL_ERROR",
  3: "FLOW_CONTROL_ERROR",
  4: "SETTINGS_TIMEOUT",
  5: "STREAM_CLOSED",
  6: "FRAME_SIZE_ERROR",
  7: "REFUSED_STREAM",
  8: "CANCEL",
  9: "COMPRESSION_ERROR",
  10: "CONNECT_ERROR",
  11: "ENHANCE_YOUR_CALM",
  12: "INADEQUATE_SECURITY",
  13: "HTTP_1_1_REQUIRED",
};
