"""The orchestrator-state services over gRPC: stubs, headers, retries and error details.

Everything a Python client needs besides the generated stubs (see generate.sh):
the two headers every call carries, the retry table of the server's README, and
how to read the google.rpc details of an error.
"""

import os
import random
import sys
import time

import grpc

_GEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen")
if not os.path.isdir(os.path.join(_GEN, "orchestration")):
    sys.exit(f"{_GEN} is missing: run ./generate.sh first")
sys.path.insert(0, _GEN)

# pylint: disable=wrong-import-position
from google.rpc import error_details_pb2, status_pb2  # noqa: E402
from orchestration.state.v1 import (  # noqa: E402
    circuit_breaker_service_pb2 as breakers_pb,
    circuit_breaker_service_pb2_grpc as breakers_grpc,
    routing_audit_service_pb2 as audit_pb,
    routing_audit_service_pb2_grpc as audit_grpc,
    statistics_service_pb2 as statistics_pb,
    statistics_service_pb2_grpc as statistics_grpc,
    workflow_state_service_pb2 as workflows_pb,
    workflow_state_service_pb2_grpc as workflows_grpc,
)

__all__ = ["StateApi", "bad_request", "error_detail", "error_info", "breakers_pb", "audit_pb", "statistics_pb", "workflows_pb"]

# The README's retry table: UNAVAILABLE (database unreachable, server starting
# or stopping) and DEADLINE_EXCEEDED are retried with exponential backoff and
# full jitter. Everything else is the caller's to handle: ABORTED (re-read and
# re-apply), FAILED_PRECONDITION (lease lost), INVALID_ARGUMENT (a bug in the
# request), ...
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
BACKOFF_BASE_S = 0.1
BACKOFF_CAP_S = 10.0
MAX_ATTEMPTS = 8


class StateApi:
    """One channel to the server and a stub per service, acting for one tenant."""

    def __init__(self, target, tenant_id, api_key=None, timeout_s=10.0):
        self.channel = grpc.insecure_channel(target)
        self.workflows = workflows_grpc.WorkflowStateServiceStub(self.channel)
        self.breakers = breakers_grpc.CircuitBreakerServiceStub(self.channel)
        self.audit = audit_grpc.RoutingAuditServiceStub(self.channel)
        self.statistics = statistics_grpc.StatisticsServiceStub(self.channel)
        # Every call names its tenant; with API keys configured on the server,
        # the key alone names it and x-tenant-id may be left out.
        self.metadata = [("x-tenant-id", tenant_id)]
        if api_key:
            self.metadata.append(("authorization", f"Bearer {api_key}"))
        self.timeout_s = timeout_s

    def call(self, method, request):
        """A unary call with a deadline, retried as the README's retry table says.

        Such a retried call may have been committed the first time: only RPCs
        that are safe to repeat (reads, RecordRoutingDecision with its
        decision_id, saves with an etag, which answer ABORTED when the first
        try committed) are called through here without more thought.
        """
        for attempt in range(MAX_ATTEMPTS):
            try:
                return method(request, metadata=self.metadata, timeout=self.timeout_s)
            except grpc.RpcError as err:
                if err.code() not in RETRYABLE or attempt == MAX_ATTEMPTS - 1:
                    raise
                # Full jitter: a random wait up to the exponential bound, so
                # that replicas failing together do not retry together.
                time.sleep(random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt)))
        raise AssertionError("unreachable")

    def stream(self, method, request, timeout_s=None):
        """A server-streaming call (not retried here: a stream is resumed by calling again)."""
        return method(request, metadata=self.metadata, timeout=timeout_s or self.timeout_s)

    def close(self):
        self.channel.close()


def error_detail(err, message_type):
    """The first detail of type `message_type` an error carries (from its grpc-status-details-bin trailer, a google.rpc.Status), or None."""
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                found = message_type()
                if detail.Unpack(found):
                    return found
    return None


def bad_request(err):
    """The google.rpc.BadRequest of an INVALID_ARGUMENT: which field is wrong, and why."""
    return error_detail(err, error_details_pb2.BadRequest)


def error_info(err):
    """The google.rpc.ErrorInfo of an error (a lost lease names its reason there)."""
    return error_detail(err, error_details_pb2.ErrorInfo)
