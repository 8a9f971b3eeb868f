import { create, type Message } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import {
  ClaimIncompleteWorkflowsResponseSchema,
  GetWorkflowExecutionResponseSchema,
  type ListWorkflowExecutionsResponse,
  ListWorkflowExecutionsResponseSchema,
  SaveWorkflowExecutionResponseSchema,
  StreamIncompleteWorkflowsResponseSchema,
  type WorkflowExecution,
} from "../../../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import type { Logger } from "../../../logging/logger.js";
import { encodeExecutionDelimited } from "./execution-binary.js";
import { ExecutionWriter } from "./execution-writer.js";
import { plainExecution, unreadRow } from "./lazy-execution.js";

// The last step of every WorkflowStateService call before Connect (or the
// gRPC fast path) serializes its answer. Handlers answer with lazy executions
// (lazy-execution.ts); every interceptor sees real messages. Here, once they
// are all done, an answer in the protobuf binary codec gets each execution
// nobody read written straight from its row (execution-binary.ts), as the
// answer's unknown field 1, into a copy of the answer that only the
// serializer sees: toBinary writes unknown fields after the known ones, and
// `execution` (or `executions`, then `next_page_token`) is each of these
// answers' only field, so the bytes are exactly those of the answer with the
// executions set (test/workflow-state/execution-encoding.test.ts). Any other
// answer (a JSON codec, or an execution an interceptor read or replaced) gets
// plain messages, which the serializer writes as usual: correct, and slower.

/** The answers whose one field is `WorkflowExecution execution = 1`. */
const SINGLE = new Set<string>([
  GetWorkflowExecutionResponseSchema.typeName,
  SaveWorkflowExecutionResponseSchema.typeName,
  StreamIncompleteWorkflowsResponseSchema.typeName,
  ClaimIncompleteWorkflowsResponseSchema.typeName,
]);

type SingleAnswer = Message & { execution?: WorkflowExecution };

/**
 * `message` as the serializer must get it: with a `writer` (binary codecs),
 * executions nobody read are written from their rows into unknown fields;
 * without one, or when any execution was read, every execution is the plain
 * message. Answers of other types are returned as they are. With `once` (a
 * stream's messages), an execution's bytes can be read once (see writtenField).
 */
export function encodeAnswer(message: Message, writer: ExecutionWriter | undefined, once = false): Message {
  if (SINGLE.has(message.$typeName)) return encodeSingle(message as SingleAnswer, writer, once);
  if (message.$typeName === ListWorkflowExecutionsResponseSchema.typeName) return encodeList(message as ListWorkflowExecutionsResponse, writer);
  return message;
}

function encodeSingle(message: SingleAnswer, writer: ExecutionWriter | undefined, once: boolean): Message {
  const { execution } = message;
  if (execution === undefined) return message;
  const row = writer === undefined ? undefined : unreadRow(execution);
  if (row === undefined) {
    const plain = plainExecution(execution);
    if (plain === execution) return message;
    const copy: SingleAnswer = { ...message, execution: plain };
    return copy;
  }
  const encoded: Message = { $typeName: message.$typeName };
  const field = writtenField(encodeExecutionDelimited(writer!, row), once);
  encoded.$unknown = message.$unknown === undefined ? [field] : [field, ...message.$unknown];
  return encoded;
}

function encodeList(message: ListWorkflowExecutionsResponse, writer: ExecutionWriter | undefined): Message {
  const rows = writer === undefined ? undefined : message.executions.map(unreadRow);
  if (rows === undefined || rows.includes(undefined)) {
    const copy: ListWorkflowExecutionsResponse = { ...message, executions: message.executions.map(plainExecution) };
    return copy;
  }
  const encoded = create(ListWorkflowExecutionsResponseSchema);
  encoded.$unknown = rows.map((row) => writtenField(encodeExecutionDelimited(writer!, row!), false));
  if (message.nextPageToken !== "") {
    writer!.string(message.nextPageToken);
    encoded.$unknown.push({ no: 2, wireType: WireType.LengthDelimited, data: writer!.finish() });
  }
  if (message.$unknown !== undefined) encoded.$unknown.push(...message.$unknown);
  return encoded;
}

/**
 * Field 1 of an answer holding `data`, an execution written from its row.
 * With `once`, the field hands its bytes to the first reader, toBinary, which
 * reads each unknown field once, and then lets go of them. Why: Connect sends
 * a stream's messages through a chain of async generators (serialize,
 * envelope, write), each suspended at its yield until the client has taken
 * the message, and each frame holds what it was given: the message, its
 * serialization and its envelope. A client that stopped reading so made the
 * server hold three copies of its message, 6 MB for a 2 MB execution
 * (test/failures/hostile-tenant.test.ts); this copy is the one we own. A
 * second read is a bug (nothing but the serializer reads a message after
 * this step) and fails the stream with INTERNAL rather than send an empty
 * execution.
 */
function writtenField(data: Uint8Array, once: boolean): UnknownField {
  return once ? new HandedOnce(data) : { no: 1, wireType: WireType.LengthDelimited, data };
}

/**
 * Unknown field 1 whose bytes go to their first reader (see writtenField). A
 * class, its getter on the prototype: an object literal with a getter makes a
 * new accessor for every message a stream sends (0.7 µs of B5's server time
 * per row; docs/performance.md, "B5's server, row by row").
 */
class HandedOnce implements UnknownField {
  readonly no = 1;
  readonly wireType = WireType.LengthDelimited;
  #bytes: Uint8Array | undefined;

  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
  }

  get data(): Uint8Array {
    const handed = this.#bytes;
    if (handed === undefined) throw new ConnectError("internal error: an execution's bytes were read twice", Code.Internal);
    this.#bytes = undefined;
    return handed;
  }
}

type UnknownField = NonNullable<Message["$unknown"]>[number];

// One writer for every unary answer: its messages are views of chunks that
// are never written again, so an answer may be serialized after later ones
// were written (see ExecutionWriter). A stream uses a writer of its own.
const unaryWriter = new ExecutionWriter();

/**
 * The encoding step as an interceptor: it must be the first (outermost) of
 * WorkflowStateService's, so that every other one sees the answer before it
 * (src/server/server.ts installs it; Connect's router and the gRPC fast path
 * run the same chain).
 *
 * The codec is the request's Content-Type (Connect answers in the request's
 * codec); a request without one (Connect's GET) gets plain messages, which is
 * right for every codec. A row that cannot be encoded or built (a stored value
 * the message cannot hold) fails the call with INTERNAL and its cause logged,
 * as the error interceptor does: the interceptors inside have seen an answer
 * by then, so nothing else would translate the error.
 */
export function createExecutionEncoding(logger: Logger): Interceptor {
  return (next) => async (req) => {
    const res = await next(req);
    const binary = isBinaryCodec(req.header.get("content-type"));
    const failed = (err: unknown) => {
      if (err instanceof ConnectError) return err;
      logger.error("internal error", { procedure: req.method.parent.typeName + "/" + req.method.name, error: err });
      return new ConnectError("internal error", Code.Internal, undefined, undefined, err);
    };
    if (!res.stream) {
      let message;
      try {
        message = encodeAnswer(res.message, binary ? unaryWriter : undefined);
      } catch (err) {
        throw failed(err);
      }
      if (message === res.message) return res;
      // Set on the answer itself rather than on a copy: the gRPC fast path's
      // answer reads its headers lazily, and `{ ...res }` would read them.
      // Interceptors inside keep the message they saw (this is a new one).
      (res as { message: Message }).message = message;
      return res;
    }
    const writer = binary ? new ExecutionWriter() : undefined;
    return { ...res, message: mapMessages(res.message, (m) => encodeAnswer(m, writer, true), failed) };
  };
}

/**
 * The messages of `source`, each mapped by `map` as it is taken: a plain
 * iterator, one promise reaction per message, not an async generator (each
 * hop of those costs a stream's every message). When `map` throws, the
 * source is closed (its finally blocks run, as a `for await` loop left early
 * would run them), and the stream fails with `failed(err)`.
 */
function mapMessages<T>(source: AsyncIterable<T>, map: (message: T) => T, failed: (err: unknown) => unknown): AsyncIterable<T> {
  const it = source[Symbol.asyncIterator]();
  const fail = async (err: unknown): Promise<never> => {
    await it.return?.().catch(() => {});
    throw failed(err);
  };
  // Synchronous but for a failure: a promise returned here would cost each message two more reactions.
  const mapped = (result: IteratorResult<T>): IteratorResult<T> | Promise<never> => {
    if (result.done === true) return result;
    let value: T;
    try {
      value = map(result.value);
    } catch (err) {
      return fail(err);
    }
    return { done: false, value };
  };
  return {
    [Symbol.asyncIterator]() {
      return {
        next: () => it.next().then(mapped),
        return: (value?: unknown) => it.return?.(value) ?? Promise.resolve({ done: true, value: undefined }),
        throw: (err?: unknown) => it.throw?.(err) ?? Promise.reject(err),
      };
    },
  };
}

/**
 * Whether a request's Content-Type selects the protobuf binary codec, for the
 * three protocols (gRPC, gRPC-Web, Connect unary and streaming). Anything else
 * (the JSON codecs, or a type not known here) gets plain messages, which is
 * right for every codec.
 */
export function isBinaryCodec(contentType: string | null): boolean {
  return contentType !== null && BINARY_CONTENT_TYPE.test(contentType);
}

const BINARY_CONTENT_TYPE = /^application\/(?:grpc(?:-web)?(?:\+proto)?|(?:connect\+)?proto)$/i;
