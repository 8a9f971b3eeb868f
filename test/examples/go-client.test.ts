import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { killAll } from "../support/processes.js";
import type { ServerProcess } from "../support/built-server.js";
import { newTenant } from "../support/server.js";
import { bufCurl, bufCurlFirst, run, startBuiltServer } from "./support/commands.js";

// examples/go-client, built offline from Debian's Go packages, against a server
// on PGlite; each of its answers is compared with what `buf curl` (which knows
// the contract only through reflection) answers to the same call.
let server: ServerProcess;
const tenant = newTenant();
/** The Go client's output: one [what, message] per line. */
let lines: [string, unknown][];

beforeAll(async () => {
  server = await startBuiltServer();
  await run("examples/go-client/generate.sh", []);
  await run("examples/go-client/build.sh", [], { timeoutMs: 300_000 });
  const address = `127.0.0.1:${server.port}`;
  const { stdout } = await run("examples/go-client/go-client", ["-addr", address, "-tenant", tenant]);
  lines = stdout.trim().split("\n").map((line) => {
    const space = line.indexOf(" ");
    return [line.slice(0, space), JSON.parse(line.slice(space + 1)) as unknown];
  });
});
afterAll(() => killAll());

/** The messages the Go client printed for one kind of call, in order. */
function printed(what: string): Record<string, any>[] {
  return lines.filter(([w]) => w === what).map(([, message]) => message as Record<string, any>);
}

describe("the Go client", () => {
  it("saves three executions and reads one back as buf curl does", async () => {
    const saves = printed("save");
    expect(saves.map((s) => s.execution.executionId)).toEqual(["go-example-1", "go-example-2", "go-example-3"]);
    const [fromBuf] = await bufCurl(server.baseUrl, tenant, "WorkflowStateService/GetWorkflowExecution", { executionId: "go-example-1" });
    expect(printed("get")).toEqual([fromBuf]);
    // Nothing changed it since it was saved: the save's answer is the stored execution.
    expect(saves[0]).toEqual(fromBuf);
  });

  it("lists them page by page as buf curl does, following the same page token", async () => {
    const pages = printed("list");
    expect(pages.map((p) => p.executions.length)).toEqual([2, 1]);
    const [first] = await bufCurl(server.baseUrl, tenant, "WorkflowStateService/ListWorkflowExecutions", { workflowName: "go-example", pageSize: 2 });
    const [second] = await bufCurl(server.baseUrl, tenant, "WorkflowStateService/ListWorkflowExecutions", {
      workflowName: "go-example", pageSize: 2, pageToken: pages[0]!.nextPageToken,
    });
    expect(pages).toEqual([first, second]);
  });

  it("streams the incomplete ones as buf curl does", async () => {
    const streamed = await bufCurl(server.baseUrl, tenant, "WorkflowStateService/StreamIncompleteWorkflows", { workflowName: "go-example" });
    expect(streamed).toHaveLength(3);
    expect(printed("stream")).toEqual(streamed);
  });

  it("reads the BadRequest detail of an INVALID_ARGUMENT", async () => {
    expect(printed("invalid")).toEqual([{ field: "execution_id", description: "must be 1-100 characters, got 0" }]);
  });

  it("watches the breaker open, and sees the transition and state that buf curl lists and watches", async () => {
    const events = printed("watch");
    expect(events.map((e) => Object.keys(e)[0])).toEqual(["currentState", "caughtUp", "transition"]);
    expect(events[0]!.currentState.state).toBe("CIRCUIT_STATE_CLOSED");
    const transition = events[2]!.transition;
    expect([transition.fromState, transition.toState]).toEqual(["CIRCUIT_STATE_CLOSED", "CIRCUIT_STATE_OPEN"]);
    // The transition the watch sent is the one the second failure caused.
    const outcomes = printed("outcome");
    expect(outcomes.map((o) => o.circuitBreaker.state)).toEqual(["CIRCUIT_STATE_CLOSED", "CIRCUIT_STATE_OPEN"]);
    expect(outcomes[1]!.transition).toEqual(transition);

    const [listed] = await bufCurl(server.baseUrl, tenant, "CircuitBreakerService/ListCircuitBreakerTransitions", { agentKey: "go-example-agent" });
    expect((listed as { transitions: unknown[] }).transitions[0]).toEqual(transition);
    const [stored] = await bufCurl(server.baseUrl, tenant, "CircuitBreakerService/GetCircuitBreakerState", { agentKey: "go-example-agent" });
    expect(stored).toEqual({ circuitBreaker: outcomes[1]!.circuitBreaker });
    const watched = await bufCurlFirst(server.baseUrl, tenant, "CircuitBreakerService/WatchCircuitBreakers", {
      agentKeys: ["go-example-agent"], includeCurrentStates: true,
    }, 2);
    expect(watched).toEqual([{ currentState: outcomes[1]!.circuitBreaker }, { caughtUp: {} }]);
  });
});
