// The one file in src/ that imports Connect's protocol helpers marked
// `@private Internal code, does not follow semantic versioning` in
// @connectrpc/connect 2.1.2 (connect-es's subpath exports "protocol",
// "protocol-grpc", "protocol-grpc-web", "protocol-connect"). They are what
// Connect's own handlers call, so using them keeps our answers byte for byte
// the same as Connect's. Both @connectrpc packages are pinned to exactly
// 2.1.2 in package.json; test/contract/pinned-internals.test.ts checks every
// name exported here (and what the fast path relies on of each) and fails on
// an upgrade that changes one. Upgrade on purpose: read connect-es's changes
// to these functions, then move the pins and that test together.
//
// Every export of this file is one such @private helper (or a type of one);
// the test reads this list from the module itself, so a helper added here
// without a check there fails too.

export {
  // @private: the defaults Connect's handlers fill in (writeMaxBytes, compressMinBytes, maxTimeoutMs).
  validateUniversalHandlerOptions,
  // @private: a method's request and response serialization, with readMaxBytes.
  createMethodSerializationLookup,
  // @private: which response compression a grpc-accept-encoding asks for.
  compressionNegotiate,
  // @private: compresses an enveloped response above compressMinBytes.
  envelopeCompress,
} from "@connectrpc/connect/protocol";
export type { Compression, Serialization } from "@connectrpc/connect/protocol";

export {
  // @private: gRPC's content type, status and header names, as Connect writes them.
  contentTypeProto,
  grpcStatusOk,
  headerAcceptEncoding,
  headerGrpcMessage,
  headerGrpcStatus,
  headerStatusDetailsBin,
  // @private: grpc-timeout, as Connect's gRPC handler reads it.
  parseTimeout,
  // @private: an error into gRPC trailers (grpc-status, grpc-message, grpc-status-details-bin) and back.
  setTrailerStatus,
  findTrailerError,
} from "@connectrpc/connect/protocol-grpc";

export {
  // @private: gRPC-Web's trailer frame (flag 0x80, then HTTP/1-style lines).
  trailerFlag,
  trailerParse,
  trailerSerialize,
} from "@connectrpc/connect/protocol-grpc-web";

export {
  // @private: the Connect protocol's JSON error body and its HTTP status.
  codeToHttpStatus,
  errorFromJsonBytes,
  errorToJsonBytes,
} from "@connectrpc/connect/protocol-connect";
