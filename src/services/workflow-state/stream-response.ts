import { create } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import {
  type StreamIncompleteWorkflowsResponse,
  StreamIncompleteWorkflowsResponseSchema,
} from "../../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import type { ExecutionRow } from "../../db/models/workflow-execution.js";
import { encodeExecutionDelimited, type ExecutionWriter } from "./execution-binary.js";
import { executionFromRow } from "./execution-row.js";

/**
 * One message of StreamIncompleteWorkflows for a row.
 *
 * Without a writer (JSON codecs), the message has `execution` set, built by
 * executionFromRow.
 *
 * With a writer (binary codecs), the execution is encoded here, straight from
 * the row (execution-binary.ts), and carried as the message's unknown field 1:
 * toBinary writes unknown fields after the known ones, and `execution` (field
 * 1) is the message's only field, so the bytes on the wire are exactly those
 * of the message with `execution` set, at a fraction of the cost. The message
 * object itself has no `execution`: it must only be serialized to binary, by
 * a serializer that writes unknown fields (Connect's, by default; a router
 * given binaryOptions.writeUnknownFields = false would send empty messages,
 * which test/workflow-state/stream.test.ts would catch).
 */
export function streamResponse(row: ExecutionRow, writer: ExecutionWriter | undefined): StreamIncompleteWorkflowsResponse {
  const response = create(StreamIncompleteWorkflowsResponseSchema);
  if (writer === undefined) {
    response.execution = executionFromRow(row);
  } else {
    response.$unknown = [{ no: 1, wireType: WireType.LengthDelimited, data: encodeExecutionDelimited(writer, row) }];
  }
  return response;
}

/**
 * Whether a request's Content-Type selects the protobuf binary codec, for the
 * three protocols (gRPC, gRPC-Web, Connect streaming); Connect answers in the
 * request's codec. Anything else (the JSON codecs, or a type not known here)
 * takes the general path, which is right for every codec.
 */
export function isBinaryCodec(contentType: string | null): boolean {
  return contentType !== null && BINARY_CONTENT_TYPE.test(contentType);
}

const BINARY_CONTENT_TYPE = /^application\/(?:grpc(?:-web)?(?:\+proto)?|connect\+proto)$/i;
