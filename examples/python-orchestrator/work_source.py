"""Where the orchestrator finds the workflows it resumes.

ClaimSource (the default) claims them with ClaimIncompleteWorkflows: each
execution is leased to one orchestrator at a time, so several orchestrators
(replicas) can share a tenant. The lease's fencing token goes with every save
(see orchestrator.Workflow.save): an orchestrator whose lease was lost (it
stalled past the lease, another one took the workflow over) gets
FAILED_PRECONDITION and stops, it cannot overwrite the new owner's work.

StreamSource reads StreamIncompleteWorkflows: a read-only view that sends every
incomplete execution to every caller, so it is safe for ONE orchestrator per
tenant (and workflow name) only; etags still stop two writers from overwriting
each other, but nothing stops two of them from running the same step.
"""

from datetime import timedelta

from google.protobuf import duration_pb2

from state_api import workflows_pb

INCOMPLETE = (
    workflows_pb.WORKFLOW_STATUS_PENDING,
    workflows_pb.WORKFLOW_STATUS_RUNNING,
    workflows_pb.WORKFLOW_STATUS_BLOCKED,
)


class Lease:
    """A lease this orchestrator holds on an execution."""

    def __init__(self, execution_id, fencing_token):
        self.execution_id = execution_id
        self.fencing_token = fencing_token

    def held(self):
        return workflows_pb.HeldLease(execution_id=self.execution_id, fencing_token=self.fencing_token)


class ClaimSource:
    """Incomplete executions claimed with ClaimIncompleteWorkflows, each with its lease."""

    # RenewLeases and ReleaseLeases take at most 1,000 leases per call.
    BATCH = 1000

    def __init__(self, api, workflow_name, owner, lease_s):
        self.api = api
        self.workflow_name = workflow_name
        self.owner = owner
        self.lease_duration = duration_pb2.Duration()
        self.lease_duration.FromTimedelta(timedelta(seconds=lease_s))

    def claim(self, limit, skip):
        """Claims up to `limit` executions for this owner; returns them with their leases.

        `skip` (the executions running here) needs no filtering: their leases
        are alive, so the server does not hand them out again.
        """
        request = workflows_pb.ClaimIncompleteWorkflowsRequest(
            owner=self.owner, lease_duration=self.lease_duration, workflow_name=self.workflow_name, max_count=limit
        )
        claimed = []
        # Read to the end: the server stops after max_count, and an execution
        # claimed but not read would stay leased to us until it expires.
        for response in self.api.stream(self.api.workflows.ClaimIncompleteWorkflows, request):
            execution = response.execution
            claimed.append((execution, Lease(execution.execution_id, execution.lease.fencing_token)))
        return claimed

    def renew(self, leases):
        """Extends the leases still held; returns the ids of those lost (the workflow stops at its next save)."""
        lost = set()
        for i in range(0, len(leases), self.BATCH):
            request = workflows_pb.RenewLeasesRequest(
                leases=[lease.held() for lease in leases[i : i + self.BATCH]], lease_duration=self.lease_duration
            )
            for renewal in self.api.call(self.api.workflows.RenewLeases, request).renewals:
                if not renewal.renewed:
                    lost.add(renewal.execution_id)
        return lost

    def release(self, leases):
        """Gives leases back, so that another orchestrator may take their workflows at once."""
        for i in range(0, len(leases), self.BATCH):
            request = workflows_pb.ReleaseLeasesRequest(leases=[lease.held() for lease in leases[i : i + self.BATCH]])
            self.api.call(self.api.workflows.ReleaseLeases, request)

    def any_incomplete(self):
        """Whether any execution of the workflow is still incomplete, held by anyone."""
        return _any_incomplete(self.api, self.workflow_name)


class StreamSource:
    """Incomplete executions from StreamIncompleteWorkflows, without leases."""

    def __init__(self, api, workflow_name):
        self.api = api
        self.workflow_name = workflow_name

    def claim(self, limit, skip):
        """Up to `limit` incomplete executions whose ids are not in `skip`, oldest first, each with its lease (None here)."""
        found = []
        responses = self.api.stream(
            self.api.workflows.StreamIncompleteWorkflows,
            workflows_pb.StreamIncompleteWorkflowsRequest(workflow_name=self.workflow_name),
        )
        try:
            for response in responses:
                if response.execution.execution_id not in skip:
                    found.append((response.execution, None))
                if len(found) >= limit:
                    break
        finally:
            responses.cancel()  # the server stops reading as soon as we stop
        return found

    def renew(self, leases):
        """Extends the leases still held; returns the ids of those lost. Nothing to renew here."""
        return set()

    def release(self, leases):
        """Gives leases back early (nothing to give back here)."""

    def any_incomplete(self):
        """Whether any execution of the workflow is still incomplete, held by anyone."""
        return _any_incomplete(self.api, self.workflow_name)


def _any_incomplete(api, workflow_name):
    page = api.call(
        api.workflows.ListWorkflowExecutions,
        workflows_pb.ListWorkflowExecutionsRequest(workflow_name=workflow_name, statuses=INCOMPLETE, page_size=1),
    )
    return len(page.executions) > 0
