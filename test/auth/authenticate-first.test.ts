// With API keys configured, a call is authenticated before its request body
// is decoded: a caller without a valid key costs the server no decoding (a
// 4 MiB body took about 0.7 s of CPU to decode before the key was looked at).
// Shown with bodies that cannot be decoded at all: without a valid key they
// answer UNAUTHENTICATED, in every protocol and on both gRPC paths (the unary
// fast path and Connect's own handler); with a valid key the same bodies
// answer INVALID_ARGUMENT, so they were decoded only then.
import * as http2 from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { envelope, wireCall, type WireAnswer } from "../support/grpc-wire.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { keyFixture, newKey } from "./support.js";

const k = keyFixture();
const PATH = "/orchestration.state.v1.WorkflowStateService/GetWorkflowExecution";
// Field 1 (execution_id) declared 127 bytes long, then the body ends: "premature EOF".
const UNDECODABLE = new Uint8Array([0x0a, 0x7f, 0x61]);

let t: TestServer;
let session: http2.ClientHttp2Session;
beforeAll(async () => {
  t = await startTestServer({ authKeys: k.authKeys });
  session = http2.connect(t.baseUrl);
});
afterAll(async () => {
  session.close();
  await t.close();
});

/** How each protocol frames the body, and where its answer carries the code. */
const protocols: Record<string, { headers: http2.OutgoingHttpHeaders; body: Uint8Array; code: (a: WireAnswer) => Code | undefined }> = {
  "gRPC (unary fast path)": { headers: {}, body: envelope(UNDECODABLE), code: grpcCode },
  // A compressed request is served by Connect's own gRPC handler (the fast path takes identity only).
  "gRPC (Connect's handler)": { headers: { "grpc-encoding": "gzip" }, body: envelope(UNDECODABLE), code: grpcCode },
  "gRPC-Web": { headers: { "content-type": "application/grpc-web+proto" }, body: envelope(UNDECODABLE), code: grpcWebCode },
  "Connect, binary": { headers: { "content-type": "application/proto", te: undefined }, body: UNDECODABLE, code: connectCode },
  "Connect, JSON": { headers: { "content-type": "application/json", te: undefined }, body: Buffer.from('{"executionId": '), code: connectCode },
};

describe.each(Object.entries(protocols))("over %s", (_name, p) => {
  const call = (authorization: string | undefined, tenant?: string) =>
    wireCall(session, {
      path: PATH,
      headers: { ...p.headers, ...(authorization === undefined ? {} : { authorization }), ...(tenant === undefined ? {} : { "x-tenant-id": tenant }) },
      body: p.body,
    }).then(p.code);

  it("an undecodable request without a key, or with a key that is not configured, answers UNAUTHENTICATED", async () => {
    expect(await call(undefined)).toBe(Code.Unauthenticated);
    expect(await call(`Bearer ${newKey()}`)).toBe(Code.Unauthenticated);
  });

  it("an undecodable request with a valid key naming another tenant answers PERMISSION_DENIED", async () => {
    expect(await call(`Bearer ${k.writerA}`, k.tenantB)).toBe(Code.PermissionDenied);
  });

  it("the same request with a valid key is decoded, and answers INVALID_ARGUMENT", async () => {
    expect(await call(`Bearer ${k.writerA}`)).toBe(Code.InvalidArgument);
  });
});

function grpcCode(a: WireAnswer): Code | undefined {
  const status = a.trailers["grpc-status"] ?? a.headers["grpc-status"];
  return status === undefined ? undefined : (Number(status) as Code);
}

// gRPC-Web: the trailers are the body's last frame (flag 0x80), as HTTP/1 header lines.
function grpcWebCode(a: WireAnswer): Code | undefined {
  const inHeaders = a.headers["grpc-status"];
  if (inHeaders !== undefined) return Number(inHeaders) as Code;
  const match = /grpc-status: *(\d+)/i.exec(Buffer.from(a.body, "hex").toString("latin1"));
  return match === null ? undefined : (Number(match[1]) as Code);
}

// Connect unary: an HTTP error status with a JSON body naming the code.
function connectCode(a: WireAnswer): Code | undefined {
  const json = JSON.parse(Buffer.from(a.body, "hex").toString("utf8") || "{}") as { code?: string };
  const names: Record<string, Code> = {
    unauthenticated: Code.Unauthenticated,
    permission_denied: Code.PermissionDenied,
    invalid_argument: Code.InvalidArgument,
  };
  return json.code === undefined ? undefined : names[json.code];
}
