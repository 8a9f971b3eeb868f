"""Where the orchestrator finds the workflows it resumes.

StreamSource reads StreamIncompleteWorkflows: a read-only view that sends every
incomplete execution to every caller, so it is safe for ONE orchestrator per
tenant (and workflow name) only; etags still stop two writers from overwriting
each other, but nothing stops two of them from running the same step.
"""

from state_api import workflows_pb

INCOMPLETE = (
    workflows_pb.WORKFLOW_STATUS_PENDING,
    workflows_pb.WORKFLOW_STATUS_RUNNING,
    workflows_pb.WORKFLOW_STATUS_BLOCKED,
)


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
        page = self.api.call(
            self.api.workflows.ListWorkflowExecutions,
            workflows_pb.ListWorkflowExecutionsRequest(
                workflow_name=self.workflow_name, statuses=INCOMPLETE, page_size=1
            ),
        )
        return len(page.executions) > 0
