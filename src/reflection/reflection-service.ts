import { type DescFile, type DescService, toBinary } from "@bufbuild/protobuf";
import {
  type DescriptorProto,
  type FileDescriptorProto,
  FileDescriptorProtoSchema,
} from "@bufbuild/protobuf/wkt";
import { Code, type ServiceImpl } from "@connectrpc/connect";
import { ServerReflection as ServerReflectionV1 } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionV1alpha } from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";

/**
 * The gRPC server reflection services, in both protocol versions, ready for
 * `router.service(...)`. grpcurl and `buf curl` use v1 and fall back to
 * v1alpha; older tools only know v1alpha.
 */
export interface ReflectionServices {
  /** Implementation of grpc.reflection.v1.ServerReflection. */
  readonly v1: ServiceImpl<typeof ServerReflectionV1>;
  /** Implementation of grpc.reflection.v1alpha.ServerReflection. */
  readonly v1alpha: ServiceImpl<typeof ServerReflectionV1alpha>;
}

// The v1 and v1alpha messages are identical apart from their type names, so
// the shared code works on these structural shapes; each version's generated
// request type is assignable to ReflectionRequest, and ReflectionAnswer is
// assignable to each version's response init type.
type ReflectionRequest = {
  host: string;
  messageRequest:
    | {
        case:
          | "fileByFilename"
          | "fileContainingSymbol"
          | "allExtensionNumbersOfType"
          | "listServices";
        value: string;
      }
    | {
        case: "fileContainingExtension";
        value: { containingType: string; extensionNumber: number };
      }
    | { case: undefined; value?: undefined };
};

type ReflectionAnswer =
  | { case: "fileDescriptorResponse"; value: { fileDescriptorProto: Uint8Array[] } }
  | {
      case: "allExtensionNumbersResponse";
      value: { baseTypeName: string; extensionNumber: number[] };
    }
  | { case: "listServicesResponse"; value: { service: { name: string }[] } }
  | { case: "errorResponse"; value: { errorCode: number; errorMessage: string } };

/**
 * Creates gRPC server reflection (v1 and v1alpha) for the given served
 * services. Pass every service the server routes, including
 * grpc.health.v1.Health; the two reflection services are added automatically.
 * `files` adds files no service reaches, such as those of the messages sent
 * as error details (google.rpc.BadRequest, ...): clients find their types by
 * symbol and file name like any other, but they are not listed as services.
 *
 * The answer to a file request holds the file and all its transitive imports
 * (well-known types included), each once, requested file first. Comments are
 * not included: generated code embeds descriptors without source info.
 */
export function createReflectionServices(
  services: readonly DescService[],
  files: readonly DescFile[] = [],
): ReflectionServices {
  const index = buildIndex([...services, ServerReflectionV1, ServerReflectionV1alpha], files);

  async function* serverReflectionInfo<R extends ReflectionRequest>(
    requests: AsyncIterable<R>,
  ) {
    // Requests on one stream are answered in order, one response each; errors
    // are reported in-band so the stream stays usable.
    for await (const request of requests) {
      yield {
        validHost: request.host,
        originalRequest: request,
        messageResponse: answer(index, request),
      };
    }
  }

  return {
    v1: { serverReflectionInfo },
    v1alpha: { serverReflectionInfo },
  };
}

/** Everything needed to answer requests, computed once at construction. */
interface ReflectionIndex {
  /** Full names of served services, sorted. */
  readonly serviceNames: string[];
  /** Every file reachable from the served services, by file name. */
  readonly files: Map<string, DescFile>;
  /** Serialized FileDescriptorProto of each file, by file name. */
  readonly encoded: Map<string, Uint8Array>;
  /** Fully-qualified symbol (no leading dot) -> declaring file. */
  readonly symbols: Map<string, DescFile>;
  /** Fully-qualified message names, for all_extension_numbers_of_type. */
  readonly messages: Set<string>;
  /** Extendee full name -> extension number -> declaring file. */
  readonly extensions: Map<string, Map<number, DescFile>>;
}

function buildIndex(services: readonly DescService[], files: readonly DescFile[]): ReflectionIndex {
  const index: ReflectionIndex = {
    serviceNames: [...new Set(services.map((s) => s.typeName))].sort(),
    files: new Map(),
    encoded: new Map(),
    symbols: new Map(),
    messages: new Set(),
    extensions: new Map(),
  };
  const addFile = (file: DescFile): void => {
    // DescFile.name drops the ".proto" suffix; reflection uses the real name.
    const name = file.proto.name;
    if (index.files.has(name)) return;
    index.files.set(name, file);
    index.encoded.set(name, toBinary(FileDescriptorProtoSchema, file.proto));
    indexSymbols(index, file);
    file.dependencies.forEach(addFile);
  };
  for (const service of services) addFile(service.file);
  files.forEach(addFile);
  return index;
}

// Walks the FileDescriptorProto rather than DescFile because DescMessage
// leaves out map entry messages, which are symbols too (e.g.
// "pkg.Msg.LabelsEntry") and are found by protoc-based servers.
function indexSymbols(index: ReflectionIndex, file: DescFile): void {
  const proto: FileDescriptorProto = file.proto;
  const add = (name: string): void => {
    if (!index.symbols.has(name)) index.symbols.set(name, file);
  };
  const join = (scope: string, name: string): string => (scope ? `${scope}.${name}` : name);
  const addExtensions = (scope: string, fields: DescriptorProto["extension"]): void => {
    for (const ext of fields) {
      add(join(scope, ext.name));
      // Extendee is fully qualified with a leading dot in compiled descriptors.
      const extendee = ext.extendee.replace(/^\./, "");
      let numbers = index.extensions.get(extendee);
      if (!numbers) index.extensions.set(extendee, (numbers = new Map()));
      numbers.set(ext.number, file);
    }
  };
  const addEnums = (scope: string, enums: DescriptorProto["enumType"]): void => {
    for (const e of enums) {
      const enumName = join(scope, e.name);
      add(enumName);
      for (const v of e.value) {
        // Protobuf scopes enum values as siblings of their enum ("pkg.VALUE");
        // also accept the nested spelling ("pkg.Enum.VALUE") some clients use.
        add(join(scope, v.name));
        add(`${enumName}.${v.name}`);
      }
    }
  };
  const addMessages = (scope: string, messages: DescriptorProto[]): void => {
    for (const m of messages) {
      const name = join(scope, m.name);
      add(name);
      index.messages.add(name);
      for (const f of m.field) add(`${name}.${f.name}`);
      for (const o of m.oneofDecl) add(`${name}.${o.name}`);
      addMessages(name, m.nestedType);
      addEnums(name, m.enumType);
      addExtensions(name, m.extension);
    }
  };
  const pkg = proto.package;
  addMessages(pkg, proto.messageType);
  addEnums(pkg, proto.enumType);
  addExtensions(pkg, proto.extension);
  for (const s of proto.service) {
    const name = join(pkg, s.name);
    add(name);
    for (const m of s.method) add(`${name}.${m.name}`);
  }
}

function answer(index: ReflectionIndex, request: ReflectionRequest): ReflectionAnswer {
  const req = request.messageRequest;
  switch (req.case) {
    case "listServices":
      return {
        case: "listServicesResponse",
        value: { service: index.serviceNames.map((name) => ({ name })) },
      };
    case "fileByFilename":
      return filesAnswer(index, index.files.get(req.value), `file not found: ${req.value}`);
    case "fileContainingSymbol":
      return filesAnswer(index, index.symbols.get(req.value), `symbol not found: ${req.value}`);
    case "fileContainingExtension": {
      const { containingType, extensionNumber } = req.value;
      return filesAnswer(
        index,
        index.extensions.get(containingType)?.get(extensionNumber),
        `extension not found: ${containingType}(${extensionNumber})`,
      );
    }
    case "allExtensionNumbersOfType": {
      // A known message without extensions gets an empty list (as grpc-go and
      // grpc-java do); only an unknown type is NOT_FOUND.
      if (!index.messages.has(req.value)) {
        return errorAnswer(Code.NotFound, `type not found: ${req.value}`);
      }
      const numbers = [...(index.extensions.get(req.value)?.keys() ?? [])].sort((a, b) => a - b);
      return {
        case: "allExtensionNumbersResponse",
        value: { baseTypeName: req.value, extensionNumber: numbers },
      };
    }
    case undefined:
      return errorAnswer(Code.InvalidArgument, "message_request is not set");
  }
}

function filesAnswer(
  index: ReflectionIndex,
  file: DescFile | undefined,
  notFound: string,
): ReflectionAnswer {
  if (!file) return errorAnswer(Code.NotFound, notFound);
  const names = new Set<string>();
  const visit = (f: DescFile): void => {
    if (names.has(f.proto.name)) return;
    names.add(f.proto.name);
    f.dependencies.forEach(visit);
  };
  visit(file);
  return {
    case: "fileDescriptorResponse",
    value: {
      // Every reachable file was encoded at construction, hence the `!`.
      fileDescriptorProto: [...names].map((name) => index.encoded.get(name)!),
    },
  };
}

function errorAnswer(code: Code, message: string): ReflectionAnswer {
  // Code's numeric values are the gRPC status codes (NOT_FOUND = 5, ...).
  return { case: "errorResponse", value: { errorCode: code, errorMessage: message } };
}
