import { Code, ConnectError, type ContextValues, type Interceptor } from "@connectrpc/connect";
import { codeName } from "./code-name.js";
import type { Logger } from "./logger.js";

/**
 * Who a call acted for, read from its context values when it ends: the tenant
 * and the id of the API key from the configuration (never the key). The
 * server passes it in: the auth and tenancy interceptors set those values and
 * log through this folder, so this folder does not import them.
 */
export type CallIdentity = (values: ContextValues) => { tenant: string | undefined; key: string | undefined };

/**
 * Writes one log line per RPC when it ends: procedure, tenant, API key id (see
 * CallIdentity), status code, duration in milliseconds and, for streams, the
 * number of messages sent. Must be the outermost interceptor, so that it sees
 * the final code.
 */
export function createLoggingInterceptor(logger: Logger, identity: CallIdentity): Interceptor {
  return (next) => async (req) => {
    const start = performance.now();
    const procedure = `${req.method.parent.typeName}/${req.method.name}`;
    const log = (err: unknown, messages?: number) => {
      const code = err === undefined ? "OK" : codeName(ConnectError.from(err).code);
      const { tenant, key } = identity(req.contextValues);
      const fields = {
        procedure,
        tenant,
        key,
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
