// The package's client entry, `orchestrator-state/client`: the client factory,
// the contract's generated types (messages, enums, services), the error
// details the server sends, and Connect's error class to read them with.
export { createStateClients, type StateClientOptions, type StateClients } from "./state-clients.js";
export * from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
export * from "../../gen/orchestration/state/v1/circuit_breaker_service_pb.js";
export * from "../../gen/orchestration/state/v1/routing_audit_service_pb.js";
export * from "../../gen/orchestration/state/v1/statistics_service_pb.js";
export { BadRequestSchema, ErrorInfoSchema, type BadRequest, type ErrorInfo } from "../../gen/google/rpc/error_details_pb.js";
export { Code, ConnectError } from "@connectrpc/connect";
