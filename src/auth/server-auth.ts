import type { DescMethod } from "@bufbuild/protobuf";
import { ConnectError, type Interceptor } from "@connectrpc/connect";
import type { Config } from "../config.js";
import type { LogFields, Logger } from "../logging/logger.js";
import { type AuthOptions, authenticate, authorize, createAuthInterceptor } from "./auth-interceptor.js";
import { KeyStore, type Principal } from "./key-store.js";

/** The settings authentication is built from. */
export type AuthConfig = Pick<Config, "authKeysFile" | "authKeys" | "authPublicHealth" | "authPublicReflection">;

/**
 * What a kind of service's interceptors decide from a call's `authorization`
 * header, checked the same way: the Principal (undefined when the service
 * needs no key), and the error they would refuse the call with, if any. The
 * server runs it before it reads a unary call's body (src/server/admission.ts).
 */
export type AuthCheck = (method: DescMethod, authorization: string | null) => AuthOutcome;

/** See AuthCheck. */
export interface AuthOutcome {
  principal: Principal | undefined;
  refusal?: ConnectError;
}

/** How the server authenticates callers: the interceptors each kind of service gets. */
export interface ServerAuth {
  /** Whether no key is configured: any caller may act for any tenant it names. */
  readonly developmentMode: boolean;
  /** For the four services of the contract: a key, and a writing key for writes. */
  readonly tenantServices: Interceptor[];
  /** For grpc.health.v1.Health: none when public (the default), else any valid key. */
  readonly health: Interceptor[];
  /** For server reflection: none when public (the default), else any valid key. */
  readonly reflection: Interceptor[];
  /** The same checks as the interceptors above, per kind of service. */
  readonly checks: { tenantServices: AuthCheck; health: AuthCheck; reflection: AuthCheck };
  /** Fields for the log line saying the server is ready (how callers are authenticated). */
  readonly logFields: LogFields;
}

const noKey: AuthCheck = () => ({ principal: undefined });

/** The interceptor's checks, as an AuthCheck. */
function keyCheck(keys: KeyStore, options: AuthOptions): AuthCheck {
  return (method, authorization) => {
    let principal: Principal | undefined;
    try {
      principal = authenticate(keys, authorization);
      authorize(principal, method, options);
      return { principal };
    } catch (err) {
      return { principal, refusal: ConnectError.from(err) };
    }
  };
}

/**
 * Loads the keys (throwing an Error naming the setting when one is malformed)
 * and builds the interceptors. Without keys: development mode, no interceptor
 * at all (the tenant is whatever `x-tenant-id` says), with a warning logged
 * here, at startup.
 */
export function createServerAuth(config: AuthConfig, logger: Logger): ServerAuth {
  const keys = KeyStore.load(config);
  if (keys.size === 0) {
    logger.warn(
      "DEVELOPMENT MODE: no API keys are configured (AUTH_KEYS_FILE, AUTH_KEYS), so every caller may act for any tenant it names in x-tenant-id; never expose this port",
      { auth: "none" },
    );
    return {
      developmentMode: true,
      tenantServices: [],
      health: [],
      reflection: [],
      checks: { tenantServices: noKey, health: noKey, reflection: noKey },
      logFields: { auth: "none (development mode)" },
    };
  }
  const anyKey = [createAuthInterceptor(keys, { readOnlyKeys: false })];
  const anyKeyCheck = keyCheck(keys, { readOnlyKeys: false });
  return {
    developmentMode: false,
    tenantServices: [createAuthInterceptor(keys, { readOnlyKeys: true })],
    health: config.authPublicHealth ? [] : anyKey,
    reflection: config.authPublicReflection ? [] : anyKey,
    checks: {
      tenantServices: keyCheck(keys, { readOnlyKeys: true }),
      health: config.authPublicHealth ? noKey : anyKeyCheck,
      reflection: config.authPublicReflection ? noKey : anyKeyCheck,
    },
    logFields: {
      auth: "api-keys",
      keys: keys.size,
      publicHealth: config.authPublicHealth,
      publicReflection: config.authPublicReflection,
    },
  };
}
