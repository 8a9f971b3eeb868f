import type { DescMethod } from "@bufbuild/protobuf";
import { ConnectError, type ConnectRouter, createContextKey, createContextValues, type Interceptor } from "@connectrpc/connect";
import type { UniversalHandler, UniversalServerRequest, UniversalServerResponse } from "@connectrpc/connect/protocol";
import { AUTHORIZATION_HEADER, kPrincipal } from "../auth/auth-interceptor.js";
import type { Principal } from "../auth/key-store.js";
import type { AuthCheck } from "../auth/server-auth.js";
import type { Release, Signal, TenantLimiter } from "../limits/tenant-limiter.js";
import { callTenant, TENANT_HEADER } from "../tenancy/tenant-interceptor.js";
import { wrapUnaryHandlers } from "./unary-handlers.js";

// Admission: what the server decides about a unary call from its headers
// alone, before it reads and decodes the request body.
//
// Connect decodes a unary request before any interceptor runs, so without
// this a caller without a key made the server decode up to MAX_REQUEST_BYTES
// (about 0.7 s of CPU for 4 MiB) before the auth interceptor refused it, and a
// tenant's burst had all its bodies read and decoded while it waited for the
// database, in front of other tenants' calls. Here, on Connect's path
// (withAdmission) and on the gRPC unary fast path alike:
//
// - the headers are checked as the auth and tenancy interceptors check them
//   (the same functions): a call they would refuse is refused without reading
//   its body. It still runs through the interceptors, with an empty request
//   and its refusal under kRefusal, which refusalInterceptor throws: the
//   answer (in the call's protocol), its log line and its code are the
//   interceptors' own;
// - an admitted call of a tenant service takes one of its tenant's turns
//   (TenantLimiter: TENANT_CALLS_MAX, then the tenant's queue, then
//   RESOURCE_EXHAUSTED) before its body is read: a queued call holds no more
//   than what HTTP/2 flow control lets its client send (one window), and
//   nothing decoded. The turn is held until the answer has been written, so
//   answers a client does not read count against its own tenant.
//
// Streaming calls are authenticated by the interceptors before their request
// is decoded (Connect decodes it inside the interceptor chain) and take their
// tenant's turns per batch (src/streams/bounded-stream.ts).

/** A request header by name (null when absent; several values joined by ", "). */
export type HeaderOf = (name: string) => string | null;

/**
 * What admission decides from a call's headers: refuse it (with the
 * interceptors' error, and the key's Principal when it was valid), or let it
 * in for a tenant.
 */
export type Verdict = { refusal: ConnectError; principal: Principal | undefined } | { refusal?: undefined; tenant: string | undefined };

/** How calls of one kind of service are admitted. */
export interface Admission {
  /** The verdict on a call of `method` with these headers (cheap: no body, no database). */
  check(method: DescMethod, header: HeaderOf): Verdict;
  /**
   * A turn for an admitted call of `tenant` (undefined: a service without
   * tenants, which needs none): a Release now, or a promise of one that
   * rejects with RESOURCE_EXHAUSTED (the tenant's queue is full) or the
   * signal's reason (see TenantLimiter.acquire).
   */
  turn(tenant: string | undefined, signal: Signal): Release | Promise<Release>;
}

/** Admission for the four services: a key (when keys are configured), a tenant, and the tenant's turn. */
export function tenantAdmission(check: AuthCheck, turns: TenantLimiter): Admission {
  return {
    check(method, header) {
      const { principal, refusal } = check(method, header(AUTHORIZATION_HEADER));
      if (refusal !== undefined) return { refusal, principal };
      try {
        return { tenant: callTenant(header(TENANT_HEADER), principal) };
      } catch (err) {
        return { refusal: ConnectError.from(err), principal };
      }
    },
    turn: (tenant, signal) => (tenant === undefined ? noTurn : turns.acquire(tenant, signal)),
  };
}

/** Admission for health and reflection: a valid key when they are not public; no tenant, no turn. */
export function keyAdmission(check: AuthCheck): Admission {
  return {
    check(method, header) {
      const { principal, refusal } = check(method, header(AUTHORIZATION_HEADER));
      return refusal === undefined ? { tenant: undefined } : { refusal, principal };
    },
    turn: () => noTurn,
  };
}

const noTurn: Release = () => {};

/** Where admission leaves the refusal of a call it did not let in; refusalInterceptor throws it. */
export const kRefusal = createContextKey<ConnectError | undefined>(undefined, {
  description: "why admission refused the call",
});

/** Throws a call's refusal (kRefusal) before anything else sees the call; must follow the logging and error interceptors. */
export const refusalInterceptor: Interceptor = (next) => (req) => {
  const refusal = req.contextValues.get(kRefusal);
  if (refusal !== undefined) throw refusal;
  return next(req);
};

/**
 * Wraps a routes function so that every unary method it registers is admitted
 * before its body is read, by the Admission `admissionOf` gives its service.
 * (Apply after withRequestDecodeErrors: its handlers are the ones wrapped.)
 */
export function withAdmission(
  routes: (router: ConnectRouter) => void,
  admissionOf: (method: DescMethod) => Admission,
): (router: ConnectRouter) => void {
  return wrapUnaryHandlers(routes, (h) => admitted(h, admissionOf(h.method)));
}

function admitted(h: UniversalHandler, admission: Admission): (req: UniversalServerRequest) => Promise<UniversalServerResponse> {
  return async (req) => {
    const verdict = admission.check(h.method, (name) => req.header.get(name));
    if (verdict.refusal !== undefined) return h(refused(req, verdict.refusal, verdict.principal));
    let release: Release;
    try {
      const taken = admission.turn(verdict.tenant, req.signal);
      release = typeof taken === "function" ? taken : await taken;
    } catch (err) {
      return h(refused(req, ConnectError.from(err), undefined));
    }
    // Given back once the answer is written, or the call is over (the client
    // went away: Connect aborts the request's signal when its stream closes).
    req.signal.addEventListener("abort", release, { once: true });
    const res = await h(req).catch((err: unknown) => {
      release();
      throw err;
    });
    if (res.body === undefined) {
      release();
      return res;
    }
    return { ...res, body: releasedAfter(res.body, release) };
  };
}

async function* releasedAfter(body: AsyncIterable<Uint8Array>, release: Release): AsyncIterable<Uint8Array> {
  try {
    yield* body;
  } finally {
    release();
  }
}

/**
 * The request with its refusal, and an empty message for a body, framed as
 * its protocol frames one: the body it came with is never read. (A Connect GET
 * carries its message in the URL, which Connect reads either way.)
 */
function refused(req: UniversalServerRequest, refusal: ConnectError, principal: Principal | undefined): UniversalServerRequest {
  const contextValues = req.contextValues ?? createContextValues();
  contextValues.set(kRefusal, refusal);
  // The logging interceptor names the key of a refused call, as when the auth interceptor refuses it.
  if (principal !== undefined) contextValues.set(kPrincipal, principal);
  const type = req.header.get("content-type") ?? "";
  // gRPC and gRPC-Web: one uncompressed envelope of zero bytes; Connect: the empty message itself.
  const empty = type.startsWith("application/grpc") ? new Uint8Array(5) : type.includes("json") ? new TextEncoder().encode("{}") : new Uint8Array(0);
  const header = new Headers(req.header);
  header.delete("content-encoding");
  header.delete("content-length");
  return {
    ...req,
    header,
    contextValues,
    body: (async function* () {
      yield empty;
    })(),
  };
}
