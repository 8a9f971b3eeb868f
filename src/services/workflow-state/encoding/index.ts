// How WorkflowStateService's executions reach the wire, in one sealed folder:
// handlers answer with lazy executions (lazyExecution: a real message to
// whoever reads it, built from the row when first read), and the encoding
// step, the outermost interceptor of the service, writes the executions
// nobody read straight from their rows for binary codecs (execution-encoding.ts,
// with execution-binary.ts, which writes a row's fields, struct-from-json-text.ts,
// which writes a context from its jsonb text, and the writer of
// execution-writer.ts). Nothing outside this folder sees unknown fields or
// bytes; the contract, same bytes as toBinary of the real messages, is
// test/workflow-state/execution-encoding.test.ts,
// test/workflow-state/execution-binary.test.ts and
// test/workflow-state/struct-from-json-text.test.ts.
export { lazyExecution, executionsBuilt } from "./lazy-execution.js";
export { createExecutionEncoding } from "./execution-encoding.js";
