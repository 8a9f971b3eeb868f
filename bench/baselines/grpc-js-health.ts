// Baseline of B0: grpc.health.v1.Health/Check answering SERVING on bare
// @grpc/grpc-js, with the same protobuf-es codec as our server. No
// interceptors, no logging. Listens on 127.0.0.1:<argv[2]>.
import * as grpc from "@grpc/grpc-js";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  type HealthCheckRequest,
  HealthCheckRequestSchema,
  type HealthCheckResponse,
  HealthCheckResponseSchema,
} from "../../gen/health/v1/health_pb.js";
import { checkResponse } from "./health-answer.js";

const server = new grpc.Server();
const check: grpc.MethodDefinition<HealthCheckRequest, HealthCheckResponse> = {
  path: "/grpc.health.v1.Health/Check",
  requestStream: false,
  responseStream: false,
  requestSerialize: (m) => Buffer.from(toBinary(HealthCheckRequestSchema, m)),
  requestDeserialize: (b) => fromBinary(HealthCheckRequestSchema, b),
  responseSerialize: (m) => Buffer.from(toBinary(HealthCheckResponseSchema, m)),
  responseDeserialize: (b) => fromBinary(HealthCheckResponseSchema, b),
};
server.addService({ Check: check }, {
  Check: (call: grpc.ServerUnaryCall<HealthCheckRequest, HealthCheckResponse>, callback: grpc.sendUnaryData<HealthCheckResponse>) =>
    callback(null, checkResponse(call.request)),
});
server.bindAsync(`127.0.0.1:${process.argv[2]}`, grpc.ServerCredentials.createInsecure(), (err) => {
  if (err) throw err;
});
