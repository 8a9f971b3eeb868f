import { create, type MessageShape } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import {
  ClaimIncompleteWorkflowsResponseSchema,
  GetWorkflowExecutionResponseSchema,
  type ListWorkflowExecutionsResponse,
  ListWorkflowExecutionsResponseSchema,
  SaveWorkflowExecutionResponseSchema,
  StreamIncompleteWorkflowsResponseSchema,
} from "../../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import type { ExecutionRow } from "../../db/models/workflow-execution.js";
import { encodeExecutionDelimited, ExecutionWriter } from "./execution-binary.js";
import { executionFromRow } from "./execution-row.js";

/** The responses whose one field is `WorkflowExecution execution = 1`. */
export type ExecutionResponseSchema =
  | typeof GetWorkflowExecutionResponseSchema
  | typeof SaveWorkflowExecutionResponseSchema
  | typeof StreamIncompleteWorkflowsResponseSchema
  | typeof ClaimIncompleteWorkflowsResponseSchema;

/**
 * A response carrying the execution of a row: GetWorkflowExecution's,
 * SaveWorkflowExecution's, or one message of StreamIncompleteWorkflows or
 * ClaimIncompleteWorkflows.
 *
 * Without a writer (JSON codecs), the message has `execution` set, built by
 * executionFromRow.
 *
 * With a writer (binary codecs), the execution is encoded here, straight from
 * the row (execution-binary.ts), and carried as the message's unknown field 1:
 * toBinary writes unknown fields after the known ones, and `execution` (field
 * 1) is each of these messages' only field, so the bytes on the wire are
 * exactly those of the message with `execution` set, at a fraction of the cost
 * (building the messages and Structs, then writing them reflectively, was the
 * largest part of a GetWorkflowExecution call's CPU). The message object
 * itself has no `execution`: it must only be serialized to binary, by a
 * serializer that writes unknown fields (Connect's, by default; a router
 * given binaryOptions.writeUnknownFields = false would send empty messages,
 * which the tests of each RPC over every protocol would catch).
 */
export function executionResponse<S extends ExecutionResponseSchema>(
  schema: S,
  row: ExecutionRow,
  writer: ExecutionWriter | undefined,
): MessageShape<S> {
  const response = create(schema) as MessageShape<S>;
  if (writer === undefined) {
    response.execution = executionFromRow(row);
  } else {
    response.$unknown = [{ no: 1, wireType: WireType.LengthDelimited, data: encodeExecutionDelimited(writer, row) }];
  }
  return response;
}

/**
 * A page of ListWorkflowExecutions: `executions` (field 1) from `rows`, and
 * `next_page_token` (field 2). With a writer (binary codecs), both are
 * encoded here as the message's unknown fields, in field order (see
 * executionResponse): the bytes are those of the message built from the
 * rows, without building it (a page of large executions took tens of
 * milliseconds of CPU to build and write reflectively, in one piece).
 */
export function executionListResponse(rows: readonly ExecutionRow[], nextPageToken: string, writer: ExecutionWriter | undefined): ListWorkflowExecutionsResponse {
  if (writer === undefined) return create(ListWorkflowExecutionsResponseSchema, { executions: rows.map(executionFromRow), nextPageToken });
  const response = create(ListWorkflowExecutionsResponseSchema);
  response.$unknown = rows.map((row) => ({ no: 1, wireType: WireType.LengthDelimited, data: encodeExecutionDelimited(writer, row) }));
  if (nextPageToken !== "") {
    writer.string(nextPageToken);
    response.$unknown.push({ no: 2, wireType: WireType.LengthDelimited, data: writer.finish() });
  }
  return response;
}

// One writer for every unary response: its messages are views of chunks that
// are never written again, so a response may be serialized after later ones
// were written (see ExecutionWriter). A stream uses a writer of its own.
const unaryWriter = new ExecutionWriter();

/**
 * The writer for a unary call's response: the shared one when the request's
 * Content-Type selects a binary codec, undefined (the general path) otherwise.
 */
export function unaryExecutionWriter(contentType: string | null): ExecutionWriter | undefined {
  return isBinaryCodec(contentType) ? unaryWriter : undefined;
}

/**
 * Whether a request's Content-Type selects the protobuf binary codec, for the
 * three protocols (gRPC, gRPC-Web, Connect unary and streaming); Connect
 * answers in the request's codec. Anything else (the JSON codecs, or a type
 * not known here) takes the general path, which is right for every codec.
 */
export function isBinaryCodec(contentType: string | null): boolean {
  return contentType !== null && BINARY_CONTENT_TYPE.test(contentType);
}

const BINARY_CONTENT_TYPE = /^application\/(?:grpc(?:-web)?(?:\+proto)?|(?:connect\+)?proto)$/i;
