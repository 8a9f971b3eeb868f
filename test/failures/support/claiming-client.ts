// A replica's recovery loop as its own process, for the claims tests to
// SIGKILL in the middle of its work: it claims executions for OWNER with
// 5-second leases, "works" on each (a short sleep), and renews every lease it
// holds each second. It prints one JSON line per claimed execution
// ({"claimed": id, "token": "..."}) and one per renewal round
// ({"renewed": n, "lost": n}), and runs until it is killed.
//
// Usage: node --import tsx claiming-client.ts BASE_URL TENANT OWNER
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { WorkflowStateService } from "../../../gen/orchestration/state/v1/workflow_state_service_pb.js";

const [baseUrl, tenant, owner] = process.argv.slice(2) as [string, string, string];
const client = createClient(
  WorkflowStateService,
  createGrpcTransport({
    baseUrl,
    interceptors: [(next) => (req) => (req.header.set("x-tenant-id", tenant), next(req))],
  }),
);
const leaseDuration = { seconds: 5n, nanos: 0 };
const held = new Map<string, bigint>();

setInterval(() => {
  const leases = [...held].slice(0, 1000).map(([executionId, fencingToken]) => ({ executionId, fencingToken }));
  if (leases.length === 0) return;
  client.renewLeases({ leases, leaseDuration }).then(
    (res) => {
      let lost = 0;
      for (const r of res.renewals) if (!r.renewed) (lost++, held.delete(r.executionId));
      console.log(JSON.stringify({ renewed: res.renewals.length - lost, lost }));
    },
    () => {},
  );
}, 1_000);

for (;;) {
  for await (const { execution } of client.claimIncompleteWorkflows({ owner, leaseDuration })) {
    held.set(execution!.executionId, execution!.lease!.fencingToken);
    console.log(JSON.stringify({ claimed: execution!.executionId, token: String(execution!.lease!.fencingToken) }));
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  await new Promise((resolve) => setTimeout(resolve, 200));
}
