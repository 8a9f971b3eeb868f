import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { codeName } from "../logging/code-name.js";
import type { Logger } from "../logging/logger.js";
import { databaseErrorToConnect } from "./database-errors.js";
import { requestDecodeError } from "./request-decoding.js";

/**
 * The one place where errors become what the client sees, for unary and
 * streaming calls alike:
 * - a ConnectError thrown on purpose (validation, NOT_FOUND, ABORTED) passes as is;
 * - a known database failure becomes UNAVAILABLE, ABORTED or CANCELLED;
 * - anything else is a bug: INTERNAL with a fixed message, and the cause is logged,
 *   so SQL text and stack traces never reach the client.
 */
export function createErrorInterceptor(logger: Logger): Interceptor {
  const translate = (err: unknown, procedure: string): ConnectError => {
    // Connect decodes a streaming request inside the interceptors: bad bytes are the client's fault.
    if (err instanceof ConnectError) return requestDecodeError(err) ?? err;
    const mapped = databaseErrorToConnect(err);
    if (mapped !== undefined) {
      logger.warn("database error", { procedure, code: codeName(mapped.code), error: err });
      return mapped;
    }
    logger.error("internal error", { procedure, error: err });
    return new ConnectError("internal error", Code.Internal, undefined, undefined, err);
  };
  return (next) => async (req) => {
    const procedure = req.method.parent.typeName + "/" + req.method.name;
    try {
      const res = await next(req);
      if (!res.stream) return res;
      return { ...res, message: translateStream(res.message, (err) => translate(err, procedure)) };
    } catch (err) {
      throw translate(err, procedure);
    }
  };
}

async function* translateStream<T>(source: AsyncIterable<T>, translate: (err: unknown) => ConnectError): AsyncIterable<T> {
  try {
    yield* source;
  } catch (err) {
    throw translate(err);
  }
}
