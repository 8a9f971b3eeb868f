import { create } from "@bufbuild/protobuf";
import {
  type HealthCheckRequest,
  type HealthCheckResponse,
  HealthCheckResponseSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "../../gen/health/v1/health_pb.js";

/** The handler of the B0 baselines: what our health service answers for the overall status. */
export function checkResponse(_req: HealthCheckRequest): HealthCheckResponse {
  return create(HealthCheckResponseSchema, { status: ServingStatus.SERVING });
}
