import type { MessageInitShape } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  type Health,
  type HealthCheckRequest,
  type HealthCheckResponseSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "../../gen/health/v1/health_pb.js";

type CheckResponseInit = MessageInitShape<typeof HealthCheckResponseSchema>;

/**
 * The gRPC health checking service (grpc.health.v1.Health) plus the controls
 * the server uses to change what it reports.
 */
export interface HealthService {
  /** Implementation to pass to `router.service(Health, impl)`. */
  readonly impl: ServiceImpl<typeof Health>;
  /**
   * Sets one service's status ("" is the overall server status). A name that
   * was not registered yet becomes known from now on. Open Watch streams for
   * that name are told at once.
   */
  setStatus(service: string, status: ServingStatus): void;
  /**
   * Sets the overall status and the status of every known service, e.g.
   * SERVING once the server is ready and NOT_SERVING when it starts to drain.
   */
  setAll(status: ServingStatus): void;
  /**
   * Marks a dependency (e.g. "database") up or down. While any dependency is
   * down, the overall status and every service report NOT_SERVING, whatever
   * setStatus/setAll said; once all are up, those statuses show again.
   */
  setDependency(name: string, up: boolean): void;
  /** Number of open Watch streams; lets tests and metrics see that none leak. */
  watchCount(): number;
  /**
   * What Check answers for a service ("" for the server) right now, or
   * undefined for an unknown name (Check's NOT_FOUND). The HTTP readiness
   * endpoint answers from this, so it agrees with grpc.health.v1.
   */
  status(service: string): ServingStatus | undefined;
}

/**
 * Creates the health service for the given fully-qualified service names
 * (e.g. "orchestration.state.v1.WorkflowStateService").
 *
 * Every service, and the overall status "", starts as NOT_SERVING: the server
 * calls `setAll(SERVING)` when it is actually ready to take traffic.
 */
export function createHealthService(
  serviceNames: Iterable<string> = [],
): HealthService {
  const statuses = new Map<string, ServingStatus>([["", ServingStatus.NOT_SERVING]]);
  for (const name of serviceNames) statuses.set(name, ServingStatus.NOT_SERVING);

  // One callback per open Watch stream; each re-reads the map when woken, so
  // a single Set serves every watched name.
  const watchers = new Set<() => void>();
  // Dependencies reported down by setDependency; they override `statuses`.
  const down = new Set<string>();
  const effective = (service: string): ServingStatus | undefined => {
    const status = statuses.get(service);
    return status !== undefined && down.size > 0 ? ServingStatus.NOT_SERVING : status;
  };

  function notify(): void {
    for (const wake of watchers) wake();
  }

  function setStatus(service: string, status: ServingStatus): void {
    if (statuses.get(service) === status) return;
    statuses.set(service, status);
    notify();
  }

  function setAll(status: ServingStatus): void {
    for (const name of statuses.keys()) statuses.set(name, status);
    notify();
  }

  function setDependency(name: string, up: boolean): void {
    if (down.has(name) === !up) return;
    if (up) down.delete(name);
    else down.add(name);
    notify();
  }

  function check(req: HealthCheckRequest): CheckResponseInit {
    const status = effective(req.service);
    if (status === undefined) {
      // The health spec requires NOT_FOUND (not SERVICE_UNKNOWN) for Check.
      throw new ConnectError(`unknown service: ${req.service}`, Code.NotFound);
    }
    return { status };
  }

  async function* watch(
    req: HealthCheckRequest,
    ctx: HandlerContext,
  ): AsyncGenerator<CheckResponseInit> {
    const { signal } = ctx;
    // `changed` survives the window where we are suspended in `yield`, so a
    // change made while the previous message is being written is not lost.
    let changed = false;
    let wakeUp: (() => void) | undefined;
    const onEvent = (): void => {
      changed = true;
      wakeUp?.();
    };
    watchers.add(onEvent);
    // The signal also fires when the client cancels; waking the loop lets the
    // generator return and run `finally`, which removes the listener.
    signal.addEventListener("abort", onEvent);
    try {
      let sent: ServingStatus | undefined;
      while (!signal.aborted) {
        // Latest-value semantics (as grpc-go): a slow reader gets the current
        // status, never an ever-growing backlog of intermediate ones.
        const current = effective(req.service) ?? ServingStatus.SERVICE_UNKNOWN;
        if (current !== sent) {
          sent = current;
          yield { status: current };
          continue;
        }
        if (!changed) {
          await new Promise<void>((resolve) => (wakeUp = resolve));
          wakeUp = undefined;
        }
        changed = false;
      }
      // Aborted: by the client (nobody hears this), by the deadline (keep its
      // DEADLINE_EXCEEDED), or by the adapter's shutdownSignal: then end with
      // UNAVAILABLE so the client knows to reconnect, rather than with OK.
      throw signal.reason instanceof ConnectError
        ? signal.reason
        : new ConnectError("server is shutting down", Code.Unavailable);
    } finally {
      watchers.delete(onEvent);
      signal.removeEventListener("abort", onEvent);
    }
  }

  function list(): { statuses: Record<string, CheckResponseInit> } {
    const all: Record<string, CheckResponseInit> = {};
    for (const name of statuses.keys()) all[name] = { status: effective(name)! };
    return { statuses: all };
  }

  return {
    impl: { check, watch, list },
    setStatus,
    setAll,
    setDependency,
    watchCount: () => watchers.size,
    status: effective,
  };
}
