// Load generator of B5 and B6: one StreamIncompleteWorkflows call (B5), or
// one ClaimIncompleteWorkflows call when `claimOwner` is set (B6), over raw
// gRPC (node:http2), counting the response messages as they arrive without
// decoding them (the client must not be the bottleneck). Prints one JSON
// line: rows, rows/s, and the wall-clock time the `markRows`-th row arrived
// (bench/run.ts reads the server's RSS up to then). With the server's pid, it
// signals the server's heap probe at the rows given. Run pinned by bench/run.ts:
//
//   tsx bench/load/stream-load.ts '{"url":"http://127.0.0.1:PORT","tenant":"…","markRows":100000}'
//   tsx bench/load/stream-load.ts '{"url":"…","tenant":"…","markRows":100000,"claimOwner":"bench"}'
import * as http2 from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  ClaimIncompleteWorkflowsRequestSchema,
  StreamIncompleteWorkflowsRequestSchema,
} from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { TENANT_HEADER } from "../../src/tenancy/tenant-interceptor.js";

interface Spec {
  url: string;
  tenant: string;
  markRows: number;
  /** Claim (B6) for this owner, with a one-hour lease, instead of streaming. */
  claimOwner?: string;
  /** The server's pid and the rows at which to send it SIGUSR2 (its heap probe, bench/lib/heap-probe.mjs, reads the heap). */
  serverPid?: number;
  heapAtRows?: number[];
}

const spec = JSON.parse(process.argv[2]!) as Spec;
const message =
  spec.claimOwner === undefined
    ? toBinary(StreamIncompleteWorkflowsRequestSchema, create(StreamIncompleteWorkflowsRequestSchema))
    : toBinary(ClaimIncompleteWorkflowsRequestSchema, create(ClaimIncompleteWorkflowsRequestSchema, { owner: spec.claimOwner, leaseDuration: { seconds: 3600n } }));
const procedure = spec.claimOwner === undefined ? "StreamIncompleteWorkflows" : "ClaimIncompleteWorkflows";
const body = Buffer.alloc(5 + message.length);
body.writeUInt32BE(message.length, 1);
body.set(message, 5);

const session = http2.connect(spec.url);
const start = performance.now();
let rows = 0;
let markedAt: number | undefined;
let status: string | undefined;
// Envelope parsing across chunks: a 5-byte prefix (flag, length), then the message.
let header = Buffer.alloc(0);
let skip = 0;

const stream = session.request({
  ":method": "POST",
  ":path": `/orchestration.state.v1.WorkflowStateService/${procedure}`,
  "content-type": "application/grpc",
  te: "trailers",
  [TENANT_HEADER]: spec.tenant,
});
stream.on("response", (h) => {
  if (h["grpc-status"] !== undefined) status = String(h["grpc-status"]);
});
stream.on("trailers", (t) => (status = String(t["grpc-status"])));
stream.on("data", (chunk: Buffer) => {
  let at = 0;
  while (at < chunk.length) {
    if (skip > 0) {
      const n = Math.min(skip, chunk.length - at);
      skip -= n;
      at += n;
      continue;
    }
    const need = 5 - header.length;
    header = Buffer.concat([header, chunk.subarray(at, at + need)]);
    at += Math.min(need, chunk.length - at);
    if (header.length < 5) break;
    skip = header.readUInt32BE(1);
    header = Buffer.alloc(0);
    rows++;
    if (rows === spec.markRows) markedAt = Date.now();
    if (spec.serverPid !== undefined && spec.heapAtRows?.includes(rows)) process.kill(spec.serverPid, "SIGUSR2");
  }
});
stream.end(body);
await new Promise<void>((resolve) => stream.on("close", () => resolve()));
const seconds = (performance.now() - start) / 1000;
session.close();
console.log(JSON.stringify({ rows, seconds, rate: rows / seconds, markedAt: markedAt ?? null, status: status ?? `rst:${stream.rstCode}` }));
