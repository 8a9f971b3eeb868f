#!/usr/bin/env python3
"""A small orchestrator that keeps all its state in orchestrator-state.

It claims incomplete workflows (ClaimIncompleteWorkflows: each one leased to
one orchestrator at a time, so several can run side by side) and resumes each
where it stopped.
For each step it routes the task to an agent whose circuit breaker permits a
call (AcquirePermission), calls the agent, reports the call to the breaker
(RecordCallOutcome), the task to the statistics (RecordTaskOutcome) and the
routing decision to the audit trail (RecordRoutingDecision), and saves the
execution with its etag and its lease's fencing token before and after every
attempt, so that a restart, here or on another machine, loses nothing and
repeats no agent call, and an orchestrator whose lease was lost cannot
overwrite the work of the one that took over.

    ./generate.sh
    python3 seed.py --target 127.0.0.1:50051 --tenant 7c0e6c1e-5b7a-4c1e-9a51-8f2d6c3b9e10
    python3 orchestrator.py --target 127.0.0.1:50051 --tenant 7c0e6c1e-5b7a-4c1e-9a51-8f2d6c3b9e10 \\
        --agents-dir /tmp/agents --fail summarizer-1=5-11 --exit-when-done
"""

import argparse
import logging
import os
import random
import socket
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import grpc
from google.protobuf import duration_pb2, json_format, struct_pb2, timestamp_pb2

from fake_agent import FakeAgent
from state_api import StateApi, audit_pb, breakers_pb, error_info, statistics_pb, workflows_pb
from work_source import ClaimSource, StreamSource

log = logging.getLogger("orchestrator")

# The agents this orchestrator knows, by the capability a step requires, best
# first: (agent key, routing score).
ROUTES = {
    "erp-read": [("fetcher-1", 0.9), ("fetcher-2", 0.6)],
    "llm-summarize": [("summarizer-1", 0.8)],
    "erp-write": [("shipper-1", 0.9)],
}
DECISION_IDS = uuid.UUID("6f1d7c2e-3b4a-4e5f-8a9b-0c1d2e3f4a5b")  # namespace of uuid5(decision id)

PENDING = workflows_pb.WORKFLOW_STATUS_PENDING
RUNNING = workflows_pb.WORKFLOW_STATUS_RUNNING
COMPLETED = workflows_pb.WORKFLOW_STATUS_COMPLETED
FAILED = workflows_pb.WORKFLOW_STATUS_FAILED
TERMINAL = (COMPLETED, FAILED, workflows_pb.WORKFLOW_STATUS_CANCELLED)


class StaleCopy(Exception):
    """The stored execution moved on since we read it: carry on from the stored one."""


class LeaseLost(Exception):
    """Another orchestrator owns the workflow now."""


class Stopping(Exception):
    """The orchestrator is shutting down: leave the workflow to the next one."""


class Workflow:
    """One execution being run: the copy last read or saved, and how to save a change to it."""

    def __init__(self, api, execution, lease):
        self.api = api
        self.execution = execution
        self.lease = lease  # None without leases (StreamSource)

    @property
    def id(self):
        return self.execution.execution_id

    def step(self, step_id):
        return next((s for s in self.execution.step_executions if s.step_id == step_id), None)

    def save(self, change):
        """Saves the execution edited by `change`, conditional on its etag.

        `change(execution)` edits a copy and returns False when it no longer
        applies to it. On ABORTED (someone saved first, or our own first try
        committed before its answer was lost), the README says: read again,
        re-apply the change to what was read, save with the new etag.

        With a lease, the save carries its fencing token: FAILED_PRECONDITION
        with reason LEASE_LOST means another orchestrator owns the workflow
        now (our lease expired and it was claimed, or it was deleted), and
        this one must stop working on it.
        """
        fencing_token = self.lease.fencing_token if self.lease is not None else 0
        for round_ in range(5):
            edited = workflows_pb.WorkflowExecution()
            edited.CopyFrom(self.execution)
            if not change(edited):
                raise StaleCopy()
            request = workflows_pb.SaveWorkflowExecutionRequest(
                execution=edited, etag=self.execution.etag, fencing_token=fencing_token
            )
            try:
                self.execution = self.api.call(self.api.workflows.SaveWorkflowExecution, request).execution
                return
            except grpc.RpcError as err:
                if err.code() == grpc.StatusCode.FAILED_PRECONDITION:
                    info = error_info(err)
                    if info is not None and info.reason == "LEASE_LOST":
                        raise LeaseLost() from err
                if err.code() != grpc.StatusCode.ABORTED:
                    raise
            self.execution = self.api.call(
                self.api.workflows.GetWorkflowExecution,
                workflows_pb.GetWorkflowExecutionRequest(execution_id=self.id),
            ).execution
            time.sleep(random.uniform(0, 0.05 * 2**round_))
        raise RuntimeError(f"{self.id}: still ABORTED after 5 rounds")


class Router:
    """Picks the best agent for a step whose breaker permits a call."""

    def __init__(self, api):
        self.api = api

    def choose(self, capability, only=None, stopping=None):
        """Blocks until an agent is permitted; returns (agent, score, seconds spent routing, trial permit id or "")."""
        candidates = [c for c in ROUTES.get(capability, []) if only is None or c[0] == only]
        if not candidates:
            raise RuntimeError(f"no agent {only or ''} for capability {capability!r}")
        started = time.monotonic()
        while True:
            wait_s = 1.0
            for agent, score in candidates:
                # Not idempotent (a HALF_OPEN breaker counts the trials it
                # grants), but a trial granted to a lost answer expires after
                # the policy's half_open_trial_timeout and is granted again.
                answer = self.api.call(
                    self.api.breakers.AcquirePermission, breakers_pb.AcquirePermissionRequest(agent_key=agent)
                )
                if answer.permitted:
                    return agent, score, time.monotonic() - started, answer.permit_id
                if answer.HasField("retry_time"):  # OPEN until then
                    until = answer.retry_time.ToDatetime(tzinfo=timezone.utc)
                    wait_s = min(wait_s, max(0.05, (until - datetime.now(timezone.utc)).total_seconds()))
                else:  # HALF_OPEN with every trial taken: ask again soon
                    wait_s = min(wait_s, 0.2)
            if stopping is not None and stopping.wait(wait_s):
                raise Stopping()


class Orchestrator:
    def __init__(self, api, source, agents, concurrency, poll_s):
        self.api = api
        self.source = source
        self.agents = agents
        self.router = Router(api)
        self.concurrency = concurrency
        self.poll_s = poll_s
        self.running = {}  # execution id -> lease (None without leases)
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopping = threading.Event()

    def run(self, exit_when_done):
        """Claims and runs workflows until stopped (or, with exit_when_done, until none is left)."""
        with ThreadPoolExecutor(self.concurrency) as pool:
            while not self.stopping.is_set():
                with self.lock:
                    free, busy = self.concurrency - len(self.running), set(self.running)
                try:
                    claimed = self.source.claim(free, busy) if free > 0 else []
                    for execution, lease in claimed:
                        with self.lock:
                            self.running[execution.execution_id] = lease
                        pool.submit(self.run_workflow, execution, lease)
                    if exit_when_done and not busy and not claimed and not self.source.any_incomplete():
                        return
                except grpc.RpcError as err:  # the server is away: try again at the next poll
                    log.warning("claiming failed: %s %s", err.code().name, err.details())
                self.wake.wait(self.poll_s)
                self.wake.clear()

    def renew_leases(self, every_s):
        """Keeps the leases of running workflows alive; a workflow whose lease was lost stops at its next save."""
        while not self.stopping.wait(every_s):
            with self.lock:
                leases = [lease for lease in self.running.values() if lease is not None]
            try:
                for execution_id in self.source.renew(leases):
                    log.warning("%s: lease lost", execution_id)
            except grpc.RpcError as err:
                log.warning("renewing leases failed: %s", err.code().name)

    def run_workflow(self, execution, lease):
        wf = Workflow(self.api, execution, lease)
        try:
            while wf.execution.status not in TERMINAL:
                step = next_step(wf)
                if step is None:
                    self.finish(wf, COMPLETED)
                    break
                try:
                    self.run_step(wf, step)
                except StaleCopy:
                    continue  # someone saved first: go on from what is stored
        except LeaseLost:
            log.info("%s: left (lease lost: another orchestrator has it)", wf.id)
        except Stopping:
            log.info("%s: left (stopping)", wf.id)
            self.give_back(wf)
        except Exception:  # pylint: disable=broad-except
            log.exception("%s: stopped by an error; the next claim resumes it", wf.id)
            self.give_back(wf)
        finally:
            with self.lock:
                del self.running[wf.id]
            self.wake.set()

    def give_back(self, wf):
        """Releases the lease of a workflow left incomplete, so that another orchestrator resumes it at once."""
        if wf.lease is None or wf.execution.status in TERMINAL:
            return  # a terminal save ended the lease
        try:
            self.source.release([wf.lease])
        except grpc.RpcError as err:  # it expires instead
            log.warning("%s: releasing the lease failed: %s", wf.id, err.code().name)

    def run_step(self, wf, step):
        if self.stopping.is_set():
            raise Stopping()
        record = wf.step(step.step_id)
        if record is not None and record.status == RUNNING:
            # An attempt was started, and its outcome never saved (this process
            # or the previous owner stopped in between): repeat it with the
            # same key, which the agent answers only once.
            attempt, only, repeat = record.attempt, record.agent_key, True
        else:
            attempt, only, repeat = (record.attempt if record else 0) + 1, None, False
        max_attempts = max(1, step.retry_policy.max_attempts)
        if attempt > max_attempts:
            self.finish(wf, FAILED, f"step {step.step_id}: {record.error_message}")
            return
        agent, score, routing_s, permit_id = self.router.choose(step.required_capability, only, self.stopping)
        routed_at = now()
        key = f"{wf.id}/{step.step_id}/{attempt}"
        if not repeat:
            wf.save(lambda e: start_attempt(e, step.step_id, attempt, agent))

        ok, result, duration_s = self.agents[agent].call(key, step.task_type)
        self.report(wf, step, key, agent, score, attempt, ok, result, duration_s, routing_s, routed_at, permit_id)

        if ok:
            wf.save(lambda e: end_attempt(e, step.step_id, attempt, COMPLETED, output=result))
            return
        wf.save(lambda e: end_attempt(e, step.step_id, attempt, PENDING, error=result))
        time.sleep(backoff_s(step.retry_policy, attempt))

    def report(self, wf, step, key, agent, score, attempt, ok, result, duration_s, routing_s, routed_at, permit_id):
        """Reports one agent call to the breaker, the statistics and the audit trail.

        Each report carries an id derived from the attempt's key, so that it
        counts once: when state_api retries it after a lost answer, and when
        another orchestrator repeats the attempt after this one died between
        reporting and saving (the agent answers the same key with the same
        outcome and duration).
        """
        duration = seconds(duration_s)
        once(lambda: self.api.call(
            self.api.breakers.RecordCallOutcome,
            breakers_pb.RecordCallOutcomeRequest(
                agent_key=agent, success=ok, duration=duration, permit_id=permit_id, request_id=f"call/{key}"
            ),
        ))
        once(lambda: self.api.call(
            self.api.statistics.RecordTaskOutcome,
            statistics_pb.RecordTaskOutcomeRequest(agent_key=agent, success=ok, duration=duration, request_id=f"task/{key}"),
        ))
        decision = audit_pb.RoutingDecision(
            # Derived from the attempt's key: a retry of this call stores nothing new.
            decision_id=str(uuid.uuid5(DECISION_IDS, key)),
            task_id=key,
            task_type=step.task_type,
            required_capability=step.required_capability,
            selected_agent=agent,
            agent_score=score,
            candidates=[audit_pb.CandidateAgent(agent_key=a, score=s) for a, s in ROUTES[step.required_capability]],
            success=ok,
            error_message="" if ok else result,
            retry_attempts=attempt - 1,
            routing_duration=seconds(routing_s),
            task_duration=duration,
            routed_at=routed_at,
            workflow_execution_id=wf.id,
            step_id=step.step_id,
        )
        # A repeated attempt (after a restart) was recorded the first time, with
        # its own routing time: the first record stands.
        once(lambda: self.api.call(
            self.api.audit.RecordRoutingDecision, audit_pb.RecordRoutingDecisionRequest(decision=decision)
        ))

    def finish(self, wf, status, error=""):
        def change(e):
            if e.status in TERMINAL:
                return False
            e.status = status
            e.error_message = error
            return True

        wf.save(change)
        log.info("%s: %s", wf.id, workflows_pb.WorkflowStatus.Name(status))


def once(report):
    """Sends a report with a request id; ALREADY_EXISTS means an earlier one with that id was recorded, and it stands.

    (A repeated attempt's breaker report carries another permit id than the
    first one: the server refuses the id's reuse with another request, and
    the first report is the one that counts.)
    """
    try:
        report()
    except grpc.RpcError as err:
        if err.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise


def next_step(wf):
    """The first step, in dependency order, that has not completed; None when all have."""
    done = {s.step_id for s in wf.execution.step_executions if s.status == COMPLETED}
    for step in wf.execution.definition.steps:
        if step.step_id not in done:
            if not set(step.depends_on) <= done:
                raise RuntimeError(f"{wf.id}: step {step.step_id} depends on a later step")
            return step
    return None


def start_attempt(execution, step_id, attempt, agent):
    """Saved before the agent is called: which attempt runs, on which agent."""
    record = find_or_add_step(execution, step_id)
    if record.status in (RUNNING, COMPLETED) or record.attempt != attempt - 1:
        return False
    execution.status = RUNNING
    record.status, record.attempt, record.agent_key, record.error_message = RUNNING, attempt, agent, ""
    record.started_at.CopyFrom(now())
    return True


def end_attempt(execution, step_id, attempt, status, output=None, error=""):
    """Saved after the agent answered: the step completed, or the attempt failed (PENDING: retried)."""
    record = find_or_add_step(execution, step_id)
    if record.status != RUNNING or record.attempt != attempt:
        return False
    record.status, record.error_message = status, error
    if status == COMPLETED:
        record.completed_at.CopyFrom(now())
        execution.step_outputs[step_id].CopyFrom(json_format.ParseDict(output, struct_pb2.Value()))
    return True


def find_or_add_step(execution, step_id):
    for record in execution.step_executions:
        if record.step_id == step_id:
            return record
    return execution.step_executions.add(step_id=step_id, status=PENDING)


def backoff_s(policy, attempt):
    """The step's retry policy: initial_backoff, times backoff_multiplier per attempt, at most max_backoff."""
    wait = policy.initial_backoff.ToTimedelta().total_seconds() * max(1.0, policy.backoff_multiplier) ** (attempt - 1)
    cap = policy.max_backoff.ToTimedelta().total_seconds()
    return min(wait, cap) if cap > 0 else wait


def now():
    stamp = timestamp_pb2.Timestamp()
    stamp.GetCurrentTime()
    return stamp


def seconds(value):
    duration = duration_pb2.Duration()
    duration.FromTimedelta(timedelta(seconds=value))
    return duration


def parse_failures(specs):
    """--fail AGENT=FROM-TO (repeatable): that agent's calls FROM to TO fail."""
    failing = {}
    for spec in specs:
        agent, calls = spec.split("=", 1)
        first, last = (int(n) for n in calls.split("-", 1))
        failing.setdefault(agent, set()).update(range(first, last + 1))
    return failing


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="127.0.0.1:50051", help="host:port of orchestrator-state (h2c)")
    parser.add_argument("--tenant", required=True, help="tenant id (x-tenant-id)")
    parser.add_argument("--api-key", help="API key, when the server has keys configured")
    parser.add_argument("--workflow", default="fulfil-order", help="only executions of this workflow")
    parser.add_argument("--agents-dir", required=True, help="the fake agents' shared directory")
    parser.add_argument("--fail", action="append", default=[], metavar="AGENT=FROM-TO",
                        help="make an agent's calls FROM to TO (counted from 1) fail")
    parser.add_argument("--agent-work-ms", type=float, default=20, help="how long a fake agent call takes")
    parser.add_argument("--concurrency", type=int, default=8, help="workflows run at once")
    parser.add_argument("--poll-seconds", type=float, default=1.0, help="how often to look for new work")
    parser.add_argument("--exit-when-done", action="store_true", help="exit once no incomplete workflow is left")
    parser.add_argument("--owner", default=f"{socket.gethostname()}-{os.getpid()}",
                        help="this orchestrator's name in the leases it holds")
    parser.add_argument("--lease-seconds", type=float, default=30,
                        help="how long a claimed workflow stays ours without renewal (5 to 3600); renewed every third of it")
    parser.add_argument("--source", choices=("claim", "stream"), default="claim",
                        help="claim workflows with leases (several orchestrators may run), or stream them (one orchestrator only)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    api = StateApi(args.target, args.tenant, args.api_key)
    failing = parse_failures(args.fail)
    agents = {
        name: FakeAgent(name, args.agents_dir, failing.get(name, ()), args.agent_work_ms / 1000)
        for candidates in ROUTES.values()
        for name, _ in candidates
    }
    if args.source == "claim":
        source = ClaimSource(api, args.workflow, args.owner, args.lease_seconds)
    else:
        source = StreamSource(api, args.workflow)
    orchestrator = Orchestrator(api, source, agents, args.concurrency, args.poll_seconds)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: (orchestrator.stopping.set(), orchestrator.wake.set()))
    threading.Thread(target=orchestrator.renew_leases, args=(args.lease_seconds / 3,), daemon=True).start()
    orchestrator.run(args.exit_when_done)
    orchestrator.stopping.set()
    api.close()


if __name__ == "__main__":
    main()
