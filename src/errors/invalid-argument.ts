import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, BadRequest_FieldViolationSchema } from "../../gen/google/rpc/error_details_pb.js";

/** One bad field of a request: its path (e.g. `execution.step_executions[2].step_id`) and what is wrong. */
export interface FieldViolation {
  field: string;
  description: string;
}

/**
 * Builds the INVALID_ARGUMENT error of a request with bad fields. The message
 * names every field ("execution.execution_id: must be 1-100 characters"), and a
 * google.rpc.BadRequest detail lists them for clients that read details.
 */
export function invalidArgument(violations: readonly FieldViolation[]): ConnectError {
  const message = violations.map((v) => `${v.field}: ${v.description}`).join("; ");
  const detail = create(BadRequestSchema, {
    fieldViolations: violations.map((v) => create(BadRequest_FieldViolationSchema, v)),
  });
  return new ConnectError(message, Code.InvalidArgument, undefined, [{ desc: BadRequestSchema, value: detail }]);
}
