import type { DescFile } from "@bufbuild/protobuf";
import { file_google_rpc_error_details } from "../../gen/google/rpc/error_details_pb.js";

/**
 * The files declaring every message our errors carry as details: all of
 * google.rpc's standard details (BadRequest, ErrorInfo, RetryInfo,
 * PreconditionFailure, ...) live in google/rpc/error_details.proto. No RPC
 * names these types, so reflection would not find them from the services;
 * the server passes this list to it so that grpcurl and `buf curl` decode the
 * details instead of printing base64. A detail of a type from another file
 * must add its file here.
 */
export const errorDetailFiles: readonly DescFile[] = [file_google_rpc_error_details];
