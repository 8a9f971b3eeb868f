// How WorkflowStateService's executions reach the wire, in one sealed folder:
// handlers answer with lazy executions (lazyExecution: a real message to
// whoever reads it, built from the row when first read), and the encoding
// step, the outermost interceptor of the service, writes the executions
// nobody read straight from their rows for binary codecs (execution-encoding.ts,
// with the writer of execution-binary.ts). Nothing outside this folder sees
// unknown fields or bytes; the contract, same bytes as toBinary of the real
// messages, is test/workflow-state/execution-encoding.test.ts and
// test/workflow-state/execution-binary.test.ts.
export { lazyExecution, executionsBuilt } from "./lazy-execution.js";
export { createExecutionEncoding } from "./execution-encoding.js";
