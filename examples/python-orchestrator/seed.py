#!/usr/bin/env python3
"""Creates incomplete workflows for the orchestrator to resume, as a crash would leave them.

Each execution of "fulfil-order" has three steps (fetch, summarize, ship), and
is left at one of four stages: not started; fetched; fetched and summarized;
fetched with the summary attempt started but never finished. It also gives the
summarizer's breaker a policy that opens after 3 failures in a row and tries
again after a second, so that a failing summarizer shows within a short run.

    python3 seed.py --target 127.0.0.1:50051 --tenant 7c0e6c1e-5b7a-4c1e-9a51-8f2d6c3b9e10 --count 50
"""

import argparse
from datetime import timedelta

from google.protobuf import duration_pb2, struct_pb2

from state_api import StateApi, breakers_pb, workflows_pb

W = workflows_pb


def retry_policy():
    policy = W.RetryPolicy(max_attempts=10, backoff_multiplier=2)
    policy.initial_backoff.FromTimedelta(timedelta(milliseconds=50))
    policy.max_backoff.FromTimedelta(timedelta(seconds=1))
    return policy


def definition(name):
    steps = [
        ("fetch", "erp-read", "fetch-order", []),
        ("summarize", "llm-summarize", "summarize-order", ["fetch"]),
        ("ship", "erp-write", "ship-order", ["summarize"]),
    ]
    return W.WorkflowDefinition(
        name=name,
        version="1.0.0",
        steps=[
            W.WorkflowStep(step_id=s, required_capability=c, task_type=t, depends_on=d, retry_policy=retry_policy())
            for s, c, t, d in steps
        ],
    )


def execution(name, index):
    stage = index % 4
    e = W.WorkflowExecution(
        execution_id=f"order-{index:04d}",
        workflow_name=name,
        status=W.WORKFLOW_STATUS_PENDING if stage == 0 else W.WORKFLOW_STATUS_RUNNING,
        definition=definition(name),
        initiated_by="seed.py",
    )
    e.context.update({"orderId": index})
    done = {1: ["fetch"], 2: ["fetch", "summarize"], 3: ["fetch"]}.get(stage, [])
    agents = {"fetch": "fetcher-1", "summarize": "summarizer-1"}
    for step_id in done:
        e.step_executions.add(step_id=step_id, status=W.WORKFLOW_STATUS_COMPLETED, agent_key=agents[step_id], attempt=1)
        e.step_outputs[step_id].CopyFrom(struct_pb2.Value(string_value="seeded"))
    if stage == 3:  # an attempt that started and never reported: the orchestrator repeats it
        e.step_executions.add(step_id="summarize", status=W.WORKFLOW_STATUS_RUNNING, agent_key="summarizer-1", attempt=1)
    return e


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="127.0.0.1:50051")
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--api-key")
    parser.add_argument("--workflow", default="fulfil-order")
    parser.add_argument("--count", type=int, default=50)
    args = parser.parse_args()

    api = StateApi(args.target, args.tenant, args.api_key)
    policy = breakers_pb.CircuitBreakerPolicy(consecutive_failure_threshold=3, half_open_trial_calls=2)
    policy.open_duration.CopyFrom(duration_pb2.Duration(seconds=1))
    api.call(
        api.breakers.SaveCircuitBreakerState,
        breakers_pb.SaveCircuitBreakerStateRequest(
            circuit_breaker=breakers_pb.CircuitBreaker(
                agent_key="summarizer-1", state=breakers_pb.CIRCUIT_STATE_CLOSED, policy=policy
            )
        ),
    )
    for index in range(args.count):
        # Without an etag: an upsert, safe to repeat.
        api.call(api.workflows.SaveWorkflowExecution, W.SaveWorkflowExecutionRequest(execution=execution(args.workflow, index)))
    print(f"seeded {args.count} incomplete executions of {args.workflow}")
    api.close()


if __name__ == "__main__":
    main()
