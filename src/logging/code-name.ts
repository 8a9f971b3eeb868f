import { Code } from "@connectrpc/connect";

/** The gRPC name of a code, as grpcurl and every gRPC library print it (NOT_FOUND, not NotFound): how log lines name a status. */
export function codeName(code: Code): string {
  return Code[code].replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}
