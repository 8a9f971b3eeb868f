import type { DescMethod } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createContextKey, type Interceptor } from "@connectrpc/connect";
import type { KeyStore, Principal } from "./key-store.js";

/** Request header carrying the API key: `authorization: Bearer <key>`. */
export const AUTHORIZATION_HEADER = "authorization";

/** Context key under which the auth interceptor stores the caller's Principal. */
export const kPrincipal = createContextKey<Principal | undefined>(undefined, {
  description: "the API key a call was authenticated with",
});

/** What the interceptor enforces besides a valid key. */
export interface AuthOptions {
  /**
   * Whether read-only keys are refused the methods that write. A method
   * writes unless the contract declares it `idempotency_level =
   * NO_SIDE_EFFECTS`, so a new RPC is covered without a list to update.
   */
  readOnlyKeys: boolean;
}

/**
 * Authenticates every call with its `authorization: Bearer <key>` header,
 * against `keys` (see authenticate, authorize). The Principal is stored under
 * `kPrincipal` (also for a call it then refuses), where the tenancy
 * interceptor binds the call to the key's tenant and the logging interceptor
 * finds the key's id. Installed only when keys are configured (else
 * development mode).
 */
export function createAuthInterceptor(keys: KeyStore, options: AuthOptions): Interceptor {
  return (next) => async (req) => {
    const principal = authenticate(keys, req.header.get(AUTHORIZATION_HEADER));
    req.contextValues.set(kPrincipal, principal);
    authorize(principal, req.method, options);
    return next(req);
  };
}

/**
 * The Principal of the key in an `authorization` header; a missing, malformed
 * or unknown key throws UNAUTHENTICATED. With authorize: what the interceptor
 * does, and what the server checks before it reads a unary call's body
 * (src/server/admission.ts), so that both always agree.
 */
export function authenticate(keys: KeyStore, authorization: string | null): Principal {
  const key = bearerToken(authorization);
  if (key === undefined) {
    throw new ConnectError("an API key is required: send the header authorization: Bearer <key>", Code.Unauthenticated);
  }
  const principal = keys.authenticate(key);
  if (principal === undefined) throw new ConnectError("the API key is not valid", Code.Unauthenticated);
  return principal;
}

/** Throws PERMISSION_DENIED for a read-only key calling a method that writes (when `options.readOnlyKeys`). */
export function authorize(principal: Principal, method: DescMethod, options: AuthOptions): void {
  if (options.readOnlyKeys && principal.readOnly && !isRead(method.idempotency)) {
    throw new ConnectError(`the API key "${principal.keyId}" is read-only and ${method.name} writes`, Code.PermissionDenied);
  }
}

/** Whether a method of the contract only reads (declared NO_SIDE_EFFECTS). */
function isRead(level: MethodOptions_IdempotencyLevel): boolean {
  return level === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS;
}

/**
 * The key of an `authorization` header of the form `Bearer <key>` (scheme in
 * any case), or undefined when the header is missing or has another form.
 * Several header values arrive joined by ", ", which is not one key.
 */
function bearerToken(header: string | null): string | undefined {
  const match = header === null ? null : /^Bearer +([\x21-\x7e]+) *$/i.exec(header);
  return match?.[1];
}
