import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import {
  GetWorkflowExecutionResponseSchema,
  WorkflowStateService,
} from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { createErrorInterceptor } from "../../src/errors/error-interceptor.js";
import { createLogger } from "../../src/logging/logger.js";

// The error interceptor on its own, over an in-memory transport, with handlers
// that fail the ways a query can.
function clientWith(fail: () => never, lines: string[] = []) {
  const interceptor = createErrorInterceptor(createLogger("debug", (l) => lines.push(l)));
  const transport = createRouterTransport(
    (router) =>
      router.service(
        WorkflowStateService,
        {
          getWorkflowExecution: () => fail(),
          async *streamIncompleteWorkflows() {
            yield* [];
            fail();
          },
        },
        { interceptors: [interceptor] },
      ),
  );
  return createClient(WorkflowStateService, transport);
}

describe("errors the client sees", () => {
  it("a bug (an unexpected Error carrying SQL) becomes INTERNAL with a fixed message; the cause is logged, not sent", async () => {
    const lines: string[] = [];
    const client = clientWith(() => {
      throw new Error('syntax error at or near "SELEC" in SELEC * FROM workflow_executions');
    }, lines);
    const err = ConnectError.from(await client.getWorkflowExecution({}).catch((e: unknown) => e));
    expect(err.code).toBe(Code.Internal);
    expect(err.rawMessage).toBe("internal error");
    expect(lines.join("")).toContain("SELEC * FROM workflow_executions");
  });

  it("a PostgreSQL serialization failure becomes ABORTED (retryable)", async () => {
    const client = clientWith(() => {
      throw Object.assign(new Error("could not serialize access"), { code: "40001" });
    });
    const err = ConnectError.from(await client.getWorkflowExecution({}).catch((e: unknown) => e));
    expect(err.code).toBe(Code.Aborted);
    expect(err.rawMessage).not.toContain("serialize access");
  });

  it("a lost connection in the middle of a stream ends the stream with UNAVAILABLE", async () => {
    const client = clientWith(() => {
      throw Object.assign(new Error("terminating connection due to administrator command"), { code: "57P01" });
    });
    const err = await (async () => {
      for await (const _ of client.streamIncompleteWorkflows({})) {
        // nothing arrives
      }
    })().catch((e: unknown) => ConnectError.from(e));
    expect(err?.code).toBe(Code.Unavailable);
  });

  it("a ConnectError thrown on purpose passes unchanged", async () => {
    const client = clientWith(() => {
      throw new ConnectError("workflow execution \"x\" not found", Code.NotFound);
    });
    const err = ConnectError.from(await client.getWorkflowExecution({}).catch((e: unknown) => e));
    expect(err.code).toBe(Code.NotFound);
    expect(err.rawMessage).toBe('workflow execution "x" not found');
    // keep the schema import honest: a successful response type exists for this RPC
    expect(create(GetWorkflowExecutionResponseSchema).execution).toBeUndefined();
  });
});
