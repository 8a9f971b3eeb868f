import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, BadRequest_FieldViolationSchema } from "../../gen/google/rpc/error_details_pb.js";
import { LONE_SURROGATE } from "../ranges.js";

/** One bad field of a request: its path (e.g. `execution.step_executions[2].step_id`) and what is wrong. */
export interface FieldViolation {
  field: string;
  description: string;
}

/**
 * Builds the INVALID_ARGUMENT error of a request with bad fields. The message
 * names each field ("execution.execution_id: must be 1-100 characters"), and a
 * google.rpc.BadRequest detail lists them for clients that read details: at
 * most MAX_LISTED; past them the message ends with "; and more".
 */
export function invalidArgument(violations: readonly FieldViolation[]): ConnectError {
  // gRPC sends the message and the detail as trailers, which HTTP/2 peers bound
  // (often to 16-64 KiB): a request with thousands of bad fields, or a field
  // path quoting a huge map key, must still get an answer it can read.
  const listed = violations.slice(0, MAX_LISTED).map((v) => ({ field: clip(v.field), description: clip(v.description) }));
  const message = listed.map((v) => `${v.field}: ${v.description}`).join("; ") + (violations.length > MAX_LISTED ? "; and more" : "");
  const detail = create(BadRequestSchema, {
    fieldViolations: listed.map((v) => create(BadRequest_FieldViolationSchema, v)),
  });
  return new ConnectError(message, Code.InvalidArgument, undefined, [{ desc: BadRequestSchema, value: detail }]);
}

/** Most violations named in one error; validation stops looking once it has found one more (src/validation/checks.ts). */
export const MAX_LISTED = 20;
/** Longest field path or description sent, in UTF-16 units. */
const MAX_TEXT = 200;

// A lone surrogate has no UTF-8 form: gRPC's percent-encoding of the message would throw.
const LONE_SURROGATES = new RegExp(LONE_SURROGATE.source, "g");

function clip(text: string): string {
  const clipped = text.length <= MAX_TEXT ? text : `${text.slice(0, MAX_TEXT)}…`;
  return clipped.replace(LONE_SURROGATES, "\uFFFD");
}
