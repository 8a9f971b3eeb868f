import { describe, expect, it } from "vitest";
import { decisionToColumns } from "../../src/services/routing-audit/decision-row.js";
import { at, decision, micros } from "../support/decisions.js";

// A decision's content hash is stored with it (routing_decisions.content_hash)
// and compared with the hash of a later recording of the same decision_id: the
// same hash is a retry (answered with the stored row), another is a reused id
// (ALREADY_EXISTS). So the hash of a given content must never change between
// versions, or every retry across an upgrade would be refused. `stored` is
// what the first version stored for each decision.

const cases = [
  {
    name: "ASCII fields, candidates, durations",
    stored: "3f28b61aebdad47f8ffd48046d348f2044d2f2282d73e3b6283a27d9fc8f3117",
    decision: decision({
      decisionId: "0b1e9a52-0c43-4c34-9a8f-4b1a7d1f2e60",
      taskId: "task-42",
      taskType: "summarise",
      requiredCapability: "llm.summarise",
      selectedAgent: "agent-7",
      priority: 5,
      agentScore: 0.8125,
      candidates: [{ agentKey: "agent-7", score: 0.8125 }, { agentKey: "agent-3", score: 0.5 }],
      success: false,
      errorMessage: "timeout after 30 s",
      retryAttempts: 2,
      routingDuration: micros(1_234),
      taskDuration: micros(2_000_001),
      routedAt: at(3_600, 123_456),
      workflowExecutionId: "exec-9",
      stepId: "fetch",
    }),
  },
  {
    name: "text outside ASCII (UTF-8 bytes are hashed)",
    stored: "042cb886cc84d40a3209216c379d8f7d3a4ba86dcbfb470c2db4b0aa205dac7e",
    decision: decision({
      decisionId: "5d0c7e0e-8a59-4d7e-9a4e-3c1f0b2a6d11",
      taskId: "Bestellung-Musterstraße",
      selectedAgent: "agent-ü",
      errorMessage: "échec 🚫",
      routedAt: at(0),
    }),
  },
];

describe("the content hash of a recorded decision", () => {
  for (const c of cases) {
    it(`is the value earlier versions stored: ${c.name}`, () => {
      expect(decisionToColumns(c.decision).content_hash).toBe(c.stored);
    });
  }
});
