// Every server stream ends on every path, however slowly its client reads: a
// client that resets its stream or closes its connection while the server is
// blocked on flow control (the server then logs the call once and no longer
// counts it in flight), and a server that shuts down (every open stream ends
// with UNAVAILABLE at once, whatever its reader's speed, instead of being cut
// when the grace period is over). A stream whose trailers wait behind data its
// client has not read is reset with REFUSED_STREAM, which gRPC clients
// (grpc-go, grpc-java, grpc-js) report as UNAVAILABLE; @connectrpc/connect-node
// 2.1.2's client reports it as INTERNAL, a known problem of that client.
import * as http2 from "node:http2";
import { Code } from "@connectrpc/connect";
import type { Knex } from "knex";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { createTestDatabase } from "../support/backend.js";
import { backendName } from "../support/backend.js";
import { insertLargeIncomplete } from "../support/executions.js";
import { envelope, openWireStream, type WireStream } from "../support/grpc-wire.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";

const PROCEDURE = "orchestration.state.v1.WorkflowStateService/StreamIncompleteWorkflows";
const PATH = `/${PROCEDURE}`;
// Each execution is several times the client's flow-control window (64 KiB):
// the server blocks writing the first one until the client reads.
const ROWS = 6;
const ROW_BYTES = 512 * 1024;

let knex: Knex;
beforeAll(async () => {
  knex = await createTestDatabase();
});
afterAll(async () => {
  await knex.destroy();
});

const sessions: http2.ClientHttp2Session[] = [];
function connect(baseUrl: string): http2.ClientHttp2Session {
  const session = http2.connect(baseUrl);
  session.on("error", () => {});
  sessions.push(session);
  return session;
}
afterEach(() => {
  for (const s of sessions.splice(0)) s.destroy();
});

/** A StreamIncompleteWorkflows call of `tenant` that its client does not read, once the server is blocked writing to it. */
async function stalledStream(session: http2.ClientHttp2Session, tenant: string): Promise<WireStream> {
  const call = openWireStream(session, {
    path: PATH,
    // No compression: the messages stay larger than the window.
    headers: { "x-tenant-id": tenant, "grpc-accept-encoding": "identity" },
    body: envelope(new Uint8Array()),
  });
  // Connect sends the headers with the first message, which does not fit the window.
  await call.response;
  return call;
}

function rpcLines(t: TestServer, tenant: string) {
  return t.logs.filter((l) => l.msg === "rpc" && l.procedure === PROCEDURE && l.tenant === tenant);
}

describe(`a stream whose client goes away under backpressure, on ${backendName}`, () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({}, knex);
  });
  afterAll(async () => {
    await t.close();
  });

  const ways: [string, (call: WireStream, session: http2.ClientHttp2Session) => void][] = [
    ["resets it cleanly (RST_STREAM NO_ERROR)", (call) => call.stream.close(http2.constants.NGHTTP2_NO_ERROR)],
    ["cancels it (RST_STREAM CANCEL)", (call) => call.stream.close(http2.constants.NGHTTP2_CANCEL)],
    ["closes its connection", (_call, session) => session.destroy()],
  ];
  it.each(ways)("ends when the client %s: logged once as CANCELED, no call left in flight", async (_how, goAway) => {
    const tenant = newTenant();
    await insertLargeIncomplete(knex, tenant, ROWS, ROW_BYTES);
    const session = connect(t.baseUrl);
    const call = await stalledStream(session, tenant);
    expect(t.server.stats().calls).toBe(1);

    goAway(call, session);
    await vi.waitFor(
      () => {
        expect(t.server.stats().calls).toBe(0);
        expect(rpcLines(t, tenant)).toHaveLength(1);
      },
      { timeout: 5_000, interval: 20 },
    );
    expect(rpcLines(t, tenant)[0]).toMatchObject({ code: "CANCELED" });
  });
});

describe(`a stream open when the server shuts down, on ${backendName}`, () => {
  // The grace period is long: a stream that only ends when it runs out has not ended at the start of shutdown.
  const GRACE_MS = 20_000;
  const AT_ONCE_MS = 3_000;

  it("whose client reads slowly ends at the start of shutdown, refused (UNAVAILABLE to gRPC clients), not when its client has read everything", async () => {
    const t = await startTestServer({ shutdownGraceMs: GRACE_MS }, knex);
    const tenant = newTenant();
    await insertLargeIncomplete(knex, tenant, ROWS, ROW_BYTES);
    const call = await stalledStream(connect(t.baseUrl), tenant);
    // The client reads one chunk every 200 ms: at most 16 KiB each, far slower than the server would send.
    let read = 0;
    call.stream.on("data", (chunk: Buffer) => {
      read += chunk.length;
      call.stream.pause();
      setTimeout(() => call.stream.resume(), 200);
    });
    call.stream.resume();

    const started = Date.now();
    const stopping = t.close();
    const { rstCode, trailers } = await call.closed;
    expect(Date.now() - started).toBeLessThan(AT_ONCE_MS);
    expect(read).toBeLessThan(ROWS * ROW_BYTES);
    if (trailers === undefined) expect(rstCode).toBe(http2.constants.NGHTTP2_REFUSED_STREAM);
    else expect(trailers["grpc-status"]).toBe(String(Code.Unavailable));
    await stopping;
    expect(Date.now() - started).toBeLessThan(AT_ONCE_MS + 2_000);
    expect(rpcLines(t, tenant)).toEqual([expect.objectContaining({ code: "UNAVAILABLE" })]);
  });

  it("whose client has stopped reading ends at the start of shutdown, refused (UNAVAILABLE to gRPC clients), not cut after the grace period", async () => {
    const t = await startTestServer({ shutdownGraceMs: GRACE_MS }, knex);
    const tenant = newTenant();
    await insertLargeIncomplete(knex, tenant, ROWS, ROW_BYTES);
    const call = await stalledStream(connect(t.baseUrl), tenant);

    const started = Date.now();
    const stopping = t.close();
    const { rstCode, trailers } = await call.closed;
    expect(Date.now() - started).toBeLessThan(AT_ONCE_MS);
    // Unsent messages are ahead of the trailers: the stream is refused
    // (REFUSED_STREAM, which gRPC clients report as UNAVAILABLE) unless
    // its trailers could still be sent.
    if (trailers === undefined) expect(rstCode).toBe(http2.constants.NGHTTP2_REFUSED_STREAM);
    else expect(trailers["grpc-status"]).toBe(String(Code.Unavailable));
    await stopping;
    expect(Date.now() - started).toBeLessThan(AT_ONCE_MS + 2_000);
    expect(rpcLines(t, tenant)).toEqual([expect.objectContaining({ code: "UNAVAILABLE" })]);
  });
});
