import type { ConnectRouter } from "@connectrpc/connect";
import type { UniversalHandler, UniversalServerRequest, UniversalServerResponse } from "@connectrpc/connect/protocol";

/** What a wrapper does with one call of a unary handler `h`. */
export type UnaryWrapper = (h: UniversalHandler) => (req: UniversalServerRequest) => Promise<UniversalServerResponse>;

/**
 * Wraps a routes function so that every unary handler it registers is
 * replaced by `wrap(handler)`, with the handler's own metadata (the
 * protocols, method, path and content types Connect's adapter routes by).
 * Connect's adapter reads `router.handlers` after the routes function has
 * run, so a handler replaced here is the one it serves. Admission
 * (admission.ts) and the rewrite of undecodable requests
 * (grpc-fast-path/decode-errors.ts) wrap the handlers this way; the last
 * applied is the outermost.
 */
export function wrapUnaryHandlers(routes: (router: ConnectRouter) => void, wrap: UnaryWrapper): (router: ConnectRouter) => void {
  return (router) => {
    routes(router);
    router.handlers.forEach((h, i) => {
      if (h.method.methodKind !== "unary") return;
      router.handlers[i] = Object.assign(wrap(h), {
        protocolNames: h.protocolNames,
        service: h.service,
        method: h.method,
        requestPath: h.requestPath,
        allowedMethods: h.allowedMethods,
        supportedContentType: h.supportedContentType,
      });
    });
  };
}
