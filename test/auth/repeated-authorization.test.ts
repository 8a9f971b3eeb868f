// Several `authorization` header fields in one request are refused with
// UNAUTHENTICATED on gRPC, gRPC-Web and Connect, as the README says:
// node:http2 (and node:http) keep only the first field of a single-value
// header, so without the server's own check the first key was served.
import * as http2 from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GetAgentStatisticsRequestSchema } from "../../gen/orchestration/state/v1/statistics_service_pb.js";
import { backendName } from "../support/backend.js";
import { envelope, wireCall } from "../support/grpc-wire.js";
import { type HeaderField, startHeaderRewritingProxy } from "../support/header-rewriting-proxy.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { keyFixture } from "./support.js";

const k = keyFixture();
let t: TestServer;
let noFastPath: TestServer;
beforeAll(async () => {
  t = await startTestServer({ authKeys: k.authKeys });
  // Every protocol through Connect's own handler, without the gRPC fast path.
  noFastPath = await startTestServer({ authKeys: k.authKeys, grpcFastPath: false });
});
afterAll(async () => {
  await t.close();
  await noFastPath.close();
});

type Protocol = "grpc" | "grpc-web" | "connect";
const PATH = "/orchestration.state.v1.StatisticsService/GetAgentStatistics";
const message = toBinary(GetAgentStatisticsRequestSchema, create(GetAgentStatisticsRequestSchema, { agentKey: "no-such-agent" }));

const CONTENT_TYPE: Record<Protocol, string> = {
  grpc: "application/grpc",
  "grpc-web": "application/grpc-web+proto",
  connect: "application/json",
};

/**
 * Sends GetAgentStatistics for an agent without statistics with `authorization`
 * fields exactly as given, and returns the answer's code: a gRPC status name
 * (Connect's codes are the same names, in lower case).
 */
async function callWith(server: TestServer, protocol: Protocol, authorization: string[]): Promise<string> {
  const headers: HeaderField[] = [
    [":method", "POST"],
    [":scheme", "http"],
    [":path", PATH],
    [":authority", `127.0.0.1:${server.port}`],
    ["content-type", CONTENT_TYPE[protocol]],
    ...(protocol === "grpc" ? [["te", "trailers"] as HeaderField] : []),
    ...authorization.map((v) => ["authorization", v] as HeaderField),
  ];
  const proxy = await startHeaderRewritingProxy(server.port, headers);
  const session = http2.connect(proxy.url);
  try {
    const body = protocol === "connect" ? Buffer.from(JSON.stringify({ agentKey: "no-such-agent" })) : envelope(message);
    const answer = await wireCall(session, { path: PATH, body });
    if (protocol === "connect") {
      if (answer.status === 200) return "OK";
      return String((JSON.parse(Buffer.from(answer.body, "hex").toString()) as { code: string }).code).toUpperCase();
    }
    let status: string | undefined = answer.trailers["grpc-status"] ?? answer.headers["grpc-status"];
    if (status === undefined && protocol === "grpc-web") {
      // The status in the body's trailer frame (flag 0x80), as text.
      status = /grpc-status: ?(\d+)/.exec(Buffer.from(answer.body, "hex").toString("latin1"))?.[1];
    }
    return GRPC_CODES[Number(status)] ?? `no status (${status})`;
  } finally {
    session.close();
    await proxy.close();
  }
}

const GRPC_CODES = ["OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
  "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
  "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"];

describe(`two authorization header fields on ${backendName}`, () => {
  for (const protocol of ["grpc", "grpc-web", "connect"] as Protocol[]) {
    for (const [name, server] of [["fast path on", () => t], ["fast path off", () => noFastPath]] as const) {
      it(`are UNAUTHENTICATED over ${protocol} (${name})`, async () => {
        // One field with the key: authenticated (the agent has no statistics).
        expect(await callWith(server(), protocol, [`Bearer ${k.writerA}`])).toBe("NOT_FOUND");
        // The key, then another field: what node:http2 alone would have served.
        expect(await callWith(server(), protocol, [`Bearer ${k.writerA}`, "Bearer not-a-key"])).toBe("UNAUTHENTICATED");
        // Two valid keys, also the same key twice: several keys are not one key.
        expect(await callWith(server(), protocol, [`Bearer ${k.writerA}`, `Bearer ${k.writerB}`])).toBe("UNAUTHENTICATED");
        expect(await callWith(server(), protocol, [`Bearer ${k.writerA}`, `Bearer ${k.writerA}`])).toBe("UNAUTHENTICATED");
      });
    }
  }
});
