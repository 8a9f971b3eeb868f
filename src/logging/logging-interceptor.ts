import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { kPrincipal } from "../auth/auth-interceptor.js";
import { kTenantScope } from "../tenancy/tenant-scope.js";
import { codeName } from "./code-name.js";
import type { Logger } from "./logger.js";

/**
 * Writes one log line per RPC when it ends: procedure, tenant, API key id, status code,
 * duration in milliseconds and, for streams, the number of messages sent.
 * Must be the outermost interceptor, so that it sees the final code.
 */
export function createLoggingInterceptor(logger: Logger): Interceptor {
  return (next) => async (req) => {
    const start = performance.now();
    const procedure = `${req.method.parent.typeName}/${req.method.name}`;
    const log = (err: unknown, messages?: number) => {
      const code = err === undefined ? "OK" : codeName(ConnectError.from(err).code);
      const fields = {
        procedure,
        tenant: req.contextValues.get(kTenantScope)?.tenantId,
        // The id of the API key from the configuration, never the key.
        key: req.contextValues.get(kPrincipal)?.keyId,
        code,
        durationMs: Math.round((performance.now() - start) * 1000) / 1000,
        messages,
      };
      if (err === undefined || isClientError(err)) logger.info("rpc", fields);
      else logger.warn("rpc", fields);
    };
    let res;
    try {
      res = await next(req);
    } catch (err) {
      log(err);
      throw err;
    }
    if (!res.stream) {
      log(undefined);
      return res;
    }
    const source = res.message;
    async function* counted() {
      let count = 0;
      let failure: unknown;
      try {
        for await (const message of source) {
          count++;
          yield message;
        }
      } catch (err) {
        // A client that resets the stream surfaces here as a raw socket error;
        // the call's signal says what really happened (cancel, deadline, shutdown).
        failure = req.signal.aborted && !(err instanceof ConnectError) ? (req.signal.reason ?? err) : err;
        throw err;
      } finally {
        // Also reached when the client cancels: the stream's return() runs.
        log(failure, count);
      }
    }
    return { ...res, message: counted() };
  };
}

// Codes caused by the request, not by the server: logged at info level.
function isClientError(err: unknown): boolean {
  const code = ConnectError.from(err).code;
  return [Code.InvalidArgument, Code.NotFound, Code.Aborted, Code.AlreadyExists, Code.Canceled, Code.FailedPrecondition, Code.Unauthenticated, Code.PermissionDenied, Code.OutOfRange, Code.Unimplemented].includes(code);
}
