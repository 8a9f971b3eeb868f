// Load generator for the unary workloads: raw gRPC over one node:http2
// connection, `inflight` calls outstanding at all times, for a fixed time after
// a warm-up. Prints one JSON line: calls/s, p50/p99 latency, errors by status,
// and every successful call including warm-up (bench/run.ts divides the
// server's CPU time over the whole run by it).
// Run pinned to its own core by bench/run.ts:
//
//   tsx bench/load/grpc-load.ts '{"url":"http://127.0.0.1:PORT","workload":"B1","inflight":32,"seconds":5,"warmupSeconds":1,"headers":{"x-tenant-id":"…"}}'
//
// Raw HTTP/2 rather than a gRPC client library: the generator must cost far
// less per call than the server it drives. Requests are encoded before the
// clock starts (a ring of distinct bodies per workload).
import * as http2 from "node:http2";
import { LatencyRecorder, type Measurement } from "../lib/stats.js";
import { requestBytes, type UnaryWorkload, paths } from "../workloads.js";

interface Spec {
  url: string;
  workload: UnaryWorkload;
  inflight: number;
  seconds: number;
  warmupSeconds: number;
  headers?: Record<string, string>;
}

const ringSizes: Record<UnaryWorkload, number> = { B0: 1, B1: 2_000, B2: 64, "B3-save": 1_000, "B3-get": 1_000, B4: 40 };

const spec = JSON.parse(process.argv[2]!) as Spec;
const ring = Array.from({ length: ringSizes[spec.workload] }, (_, i) => envelope(requestBytes(spec.workload, i)));
const headers = {
  ":method": "POST",
  ":path": paths[spec.workload],
  "content-type": "application/grpc",
  te: "trailers",
  ...spec.headers,
};

/** A gRPC length-prefixed message: flag byte 0, big-endian length, bytes. */
function envelope(message: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(5 + message.length);
  out[0] = 0;
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}

const session = http2.connect(spec.url);
session.on("error", (err) => {
  console.error(err);
  process.exit(1);
});
await new Promise<void>((resolve) => session.once("connect", () => resolve()));

const latencies = new LatencyRecorder();
const errors: Record<string, number> = {};
let measuring = false;
let stopping = false;
let next = 0;
let outstanding = 0;
let calls = 0;
/** Successful calls from the first to the last, warm-up and drain included: what the server's CPU time is divided by. */
let allCalls = 0;
let allDone: () => void;
const finished = new Promise<void>((resolve) => (allDone = resolve));

function call(): void {
  if (stopping) {
    if (outstanding === 0) allDone();
    return;
  }
  const body = ring[next++ % ring.length]!;
  const counted = measuring;
  const start = performance.now();
  outstanding++;
  let status: string | undefined;
  const stream = session.request(headers);
  stream.on("response", (h) => {
    // A trailers-only answer (an error) carries grpc-status in the headers.
    if (h["grpc-status"] !== undefined) status = String(h["grpc-status"]);
  });
  stream.on("trailers", (t) => (status = String(t["grpc-status"])));
  stream.on("data", () => {});
  stream.on("close", () => {
    outstanding--;
    if (status === "0") allCalls++;
    if (counted && measuring) {
      if (status === "0") {
        calls++;
        latencies.add(performance.now() - start);
      } else {
        const key = status ?? `rst:${stream.rstCode}`;
        errors[key] = (errors[key] ?? 0) + 1;
      }
    }
    call();
  });
  stream.end(body);
}

for (let i = 0; i < spec.inflight; i++) call();
await new Promise((resolve) => setTimeout(resolve, spec.warmupSeconds * 1000));
measuring = true;
const start = performance.now();
await new Promise((resolve) => setTimeout(resolve, spec.seconds * 1000));
const elapsed = (performance.now() - start) / 1000;
measuring = false;
stopping = true;
await finished;
session.close();

const errorCount = Object.values(errors).reduce((a, b) => a + b, 0);
const result: Measurement & { errorsByStatus: Record<string, number>; allCalls: number } = {
  rate: calls / elapsed,
  allCalls,
  ...latencies.summary(),
  errors: errorCount,
  errorsByStatus: errors,
};
console.log(JSON.stringify(result));
