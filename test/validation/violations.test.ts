// Validation stops once it has found the 20 violations an INVALID_ARGUMENT
// names, and one more (so that the answer can say there are more): a request
// with a bad value in every one of its entries costs no more than 21 checks.
// Before, a violation was recorded, with its field path built, for each of
// millions of entries, and then all but 20 were thrown away.
import { describe, expect, it } from "vitest";
import { Violations } from "../../src/validation/checks.js";
import { validateSave } from "../../src/services/workflow-state/validate.js";
import { create } from "@bufbuild/protobuf";
import { SaveWorkflowExecutionRequestSchema, WorkflowStatus } from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { ConnectError } from "@connectrpc/connect";
import { BadRequestSchema } from "../../gen/google/rpc/error_details_pb.js";

describe("Violations", () => {
  it("keeps 21 violations at most, and is full from then on", () => {
    const v = new Violations();
    for (let i = 0; i < 1_000_000; i++) v.add(`f[${i}]`, "bad");
    expect(v.list).toHaveLength(21);
    expect(v.full).toBe(true);
  });

  it("each() stops checking entries once full, and checks no more than the maximum", () => {
    const v = new Violations();
    let checked = 0;
    v.each("entries", new Array(10_000).fill(0), 5_000, (_, i) => {
      checked++;
      v.add(`entries[${i}]`, "bad");
    });
    // The length is the first violation; 20 entries make the answer full.
    expect([checked, v.list[0]]).toEqual([20, { field: "entries", description: "must have at most 5000 entries, got 10000" }]);
  });
});

describe("an execution with a bad field in each of its 10,000 step records", () => {
  it("is answered naming 20 of them and 'and more', after checking 21", () => {
    const req = create(SaveWorkflowExecutionRequestSchema, {
      execution: {
        executionId: "e",
        workflowName: "w",
        status: WorkflowStatus.RUNNING,
        stepExecutions: Array.from({ length: 10_000 }, () => ({ stepId: "", status: WorkflowStatus.RUNNING })),
      },
    });
    const err = ConnectError.from((() => {
      try {
        validateSave(req);
      } catch (e) {
        return e;
      }
      return new Error("validateSave accepted the execution");
    })());
    const named = err.findDetails(BadRequestSchema)[0]!.fieldViolations.map((f) => f.field);
    expect(named).toEqual(Array.from({ length: 20 }, (_, i) => `execution.step_executions[${i}].step_id`));
    expect(err.rawMessage).toMatch(/; and more$/);
  });
});
