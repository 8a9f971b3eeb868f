import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { type ConnectRouter, createServiceImplSpec, type Interceptor, type ServiceImpl } from "@connectrpc/connect";
import type { Admission } from "./admission.js";

/**
 * One service as it is registered on the router (the three things
 * router.service takes), and how its unary calls are admitted before their
 * body is read (admission.ts). Connect's router and the gRPC fast path
 * (src/server/grpc-fast-path/) serve the same registrations.
 */
export interface ServiceRegistration {
  service: DescService;
  /** The implementation of `service` (built with `serviceRegistration`, which checks that it fits). */
  impl: object;
  options: { interceptors: Interceptor[] };
  admission: Admission;
}

/** A registration whose implementation is checked against its service. */
export function serviceRegistration<S extends DescService>(
  service: S,
  impl: Partial<ServiceImpl<S>>,
  options: { interceptors: Interceptor[] },
  admission: Admission,
): ServiceRegistration {
  return { service, impl, options, admission };
}

/** The routes function that registers `services` on Connect's router, each method with its own request limit. */
export function registerOnRouter(
  services: readonly ServiceRegistration[],
  readMaxBytesOf: (method: DescMethod) => number,
): (router: ConnectRouter) => void {
  return (router) => {
    for (const { service, impl, options } of services) {
      for (const { method, impl: methodImpl } of Object.values(createServiceImplSpec(service, impl).methods)) {
        // The spec pairs each method with its own implementation, typed as the union over method kinds;
        // router.rpc's overloads want one kind at a time: the pair is right by construction.
        router.rpc(method, methodImpl as never, { ...options, readMaxBytes: readMaxBytesOf(method) });
      }
    }
  };
}
