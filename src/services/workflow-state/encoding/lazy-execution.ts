import {
  type WorkflowExecution,
  WorkflowExecutionSchema,
} from "../../../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import type { ExecutionRow } from "../../../db/models/workflow-execution.js";
import { executionFromRow } from "../execution-row.js";

// The WorkflowExecution of a stored row, as handlers return it: a real
// message to everyone who reads it, built (executionFromRow) only when
// something reads it. The encoding step (execution-encoding.ts) finds the
// executions nobody read and writes them straight from their rows
// (execution-binary.ts), which is most of a binary answer's cost saved.
//
// It is a Proxy over a small state object: every read, write, key listing or
// property descriptor goes to the real message, built on first use, so that
// protobuf-es (create, toBinary, toJson, equals, clone, isFieldSet, which
// tells explicit presence by hasOwnProperty) and any interceptor see exactly
// that message. Two reads answer without building it: `$typeName`, which
// isMessage and create check on every message field they are given, and the
// state itself, which only this folder can ask for. The target's own keys
// (`row`, `real`) are configurable, so the proxy may report the message's keys
// instead (the Proxy invariants only bind non-configurable keys and
// non-extensible targets). Not supported: freezing it (Object.freeze fails),
// and structuredClone (a Proxy cannot be cloned; clone the message instead).

const TYPE_NAME = WorkflowExecutionSchema.typeName;

/** Asks a lazy execution for its state without building it. */
const kState = Symbol("lazy execution state");

class LazyState {
  real: WorkflowExecution | undefined = undefined;
  constructor(readonly row: ExecutionRow) {}
}

/** Executions built from their row so far (tests pin which answers never build theirs). */
let built = 0;

function real(state: LazyState): WorkflowExecution {
  if (state.real === undefined) {
    state.real = executionFromRow(state.row);
    built++;
  }
  return state.real;
}

const handler: ProxyHandler<LazyState> = {
  get(state, key) {
    if (key === "$typeName") return TYPE_NAME;
    if (key === kState) return state;
    return (real(state) as unknown as Record<PropertyKey, unknown>)[key];
  },
  has(state, key) {
    if (key === "$typeName") return true;
    return key in real(state);
  },
  set(state, key, value) {
    (real(state) as unknown as Record<PropertyKey, unknown>)[key] = value;
    return true;
  },
  deleteProperty: (state, key) => Reflect.deleteProperty(real(state), key),
  defineProperty: (state, key, descriptor) => Reflect.defineProperty(real(state), key, descriptor),
  ownKeys: (state) => Reflect.ownKeys(real(state)),
  getOwnPropertyDescriptor: (state, key) => Reflect.getOwnPropertyDescriptor(real(state), key),
  getPrototypeOf: (state) => Reflect.getPrototypeOf(real(state)),
};

/** The execution of `row`, built when first read. */
export function lazyExecution(row: ExecutionRow): WorkflowExecution {
  return new Proxy(new LazyState(row), handler) as unknown as WorkflowExecution;
}

/** The row of a lazy execution nobody has read yet; undefined for any other value. */
export function unreadRow(execution: WorkflowExecution | undefined): ExecutionRow | undefined {
  const state = stateOf(execution);
  return state !== undefined && state.real === undefined ? state.row : undefined;
}

/**
 * The plain message of an execution: a lazy one's real message (built now if
 * nobody read it), anything else as it is.
 */
export function plainExecution(execution: WorkflowExecution): WorkflowExecution {
  const state = stateOf(execution);
  return state === undefined ? execution : real(state);
}

function stateOf(execution: WorkflowExecution | undefined): LazyState | undefined {
  if (execution === undefined || execution === null) return undefined;
  return (execution as unknown as { [kState]?: LazyState })[kState];
}

/** How many lazy executions were built from their rows so far, in this process. */
export function executionsBuilt(): number {
  return built;
}
