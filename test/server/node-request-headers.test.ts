import type { IncomingHttpHeaders } from "node:http2";
import { describe, expect, it } from "vitest";
import { NodeRequestHeaders } from "../../src/server/grpc-fast-path/request-headers.js";

// NodeRequestHeaders answers get/has from node:http2's header object and
// copies it into Headers for anything else; either way it must behave as the
// Headers Connect's adapter builds (nodeHeaderToWebHeader: pseudo-headers
// dropped, every value appended).

function connectHeaders(node: IncomingHttpHeaders): Headers {
  const h = new Headers();
  for (const [k, v] of Object.entries(node)) {
    if (k.startsWith(":") || v === undefined) continue;
    if (typeof v === "string") h.append(k, v);
    else for (const e of v) h.append(k, e);
  }
  return h;
}

const node: IncomingHttpHeaders = Object.assign(Object.create(null) as IncomingHttpHeaders, {
  ":method": "POST",
  ":path": "/grpc.health.v1.Health/Check",
  ":authority": "127.0.0.1:1",
  "content-type": "application/grpc",
  authorization: "Bearer k",
  "x-tenant-id": "7c0e6c1e-5b7a-4c1e-9a51-8f2d6c3b9e10, 8c0e6c1e-5b7a-4c1e-9a51-8f2d6c3b9e10",
  "x-padded": " \tpadded\t ",
  "set-cookie": ["a=1", " b=2 "],
});

/** What a Headers answers, or the name of what it throws. */
function outcome(f: () => unknown): unknown {
  try {
    return f();
  } catch (err) {
    return `throws ${(err as Error).name}`;
  }
}

describe("NodeRequestHeaders", () => {
  const names = ["authorization", "Authorization", "X-TENANT-ID", "x-padded", "set-cookie", "content-type", "absent", ":path", ":authority", "bad name", ""];

  it("get and has answer as Connect's Headers, without copying", () => {
    const ours = NodeRequestHeaders.of(node);
    const theirs = connectHeaders(node);
    for (const name of names) {
      expect(outcome(() => ours.get(name)), name).toEqual(outcome(() => theirs.get(name)));
      expect(outcome(() => ours.has(name)), name).toEqual(outcome(() => theirs.has(name)));
    }
  });

  it("iteration, forEach, getSetCookie and spreading into new Headers see every header", () => {
    const theirs = connectHeaders(node);
    expect([...NodeRequestHeaders.of(node)]).toEqual([...theirs]);
    expect([...NodeRequestHeaders.of(node).entries()]).toEqual([...theirs.entries()]);
    expect([...NodeRequestHeaders.of(node).keys()]).toEqual([...theirs.keys()]);
    expect([...NodeRequestHeaders.of(node).values()]).toEqual([...theirs.values()]);
    expect(NodeRequestHeaders.of(node).getSetCookie()).toEqual(theirs.getSetCookie());
    const seen: [string, string][] = [];
    NodeRequestHeaders.of(node).forEach((v, k) => seen.push([k, v]));
    expect(seen).toEqual([...theirs]);
    expect([...new Headers(NodeRequestHeaders.of(node))]).toEqual([...theirs]);
  });

  it("changes apply on top of every header, and later reads see them", () => {
    const ours = NodeRequestHeaders.of(node);
    const theirs = connectHeaders(node);
    for (const h of [ours, theirs]) {
      h.set("authorization", "Bearer other");
      h.append("x-new", "1");
      h.delete("x-padded");
    }
    expect([...ours]).toEqual([...theirs]);
    for (const name of names) expect(outcome(() => ours.get(name)), name).toEqual(outcome(() => theirs.get(name)));
    expect(ours).toBeInstanceOf(Headers);
  });
});
