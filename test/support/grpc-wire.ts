import * as http2 from "node:http2";

/** A gRPC request as bytes on the wire: node:http2 directly, nothing checks or rewrites it. */
export interface WireRequest {
  path: string;
  /** Request headers besides :method and :path (content-type defaults to application/grpc). */
  headers?: http2.OutgoingHttpHeaders;
  body: Uint8Array;
  method?: string;
}

/** What came back: the HTTP status, headers and trailers (without `date`), and the body bytes as hex. */
export interface WireAnswer {
  status: number;
  headers: Record<string, string>;
  trailers: Record<string, string>;
  body: string;
}

/** The 5-byte gRPC envelope (flags, big-endian length) around `payload`; `declared` overrides the length. */
export function envelope(payload: Uint8Array, flags = 0, declared = payload.byteLength): Buffer {
  const bytes = Buffer.alloc(5 + payload.byteLength);
  bytes.writeUInt8(flags, 0);
  bytes.writeUInt32BE(declared, 1);
  bytes.set(payload, 5);
  return bytes;
}

/** Sends one request on `session` and reads the whole answer. */
export function wireCall(session: http2.ClientHttp2Session, req: WireRequest): Promise<WireAnswer> {
  return new Promise((resolve, reject) => {
    const method = req.method ?? "POST";
    const withBody = method !== "GET" && method !== "HEAD";
    const stream = session.request(
      { ":method": method, ":path": req.path, "content-type": "application/grpc", te: "trailers", ...req.headers },
      { endStream: !withBody },
    );
    let status = 0;
    let headers: Record<string, string> = {};
    let trailers: Record<string, string> = {};
    const chunks: Buffer[] = [];
    stream.on("response", (h) => {
      status = Number(h[":status"]);
      headers = plain(h);
    });
    stream.on("trailers", (t) => (trailers = plain(t)));
    stream.on("data", (d: Buffer) => chunks.push(d));
    stream.on("end", () => resolve({ status, headers, trailers, body: Buffer.concat(chunks).toString("hex") }));
    stream.on("error", reject);
    if (withBody) stream.end(req.body);
  });
}

function plain(h: http2.IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) {
    if (k === "date" || k === ":status" || v === undefined) continue;
    out[k] = Array.isArray(v) ? v.join(", ") : String(v);
  }
  return out;
}

/** A gRPC call on the wire whose answer the test reads (or does not read) itself. */
export interface WireStream {
  stream: http2.ClientHttp2Stream;
  /** Resolves with the response headers. */
  response: Promise<Record<string, string>>;
  /** Resolves when the stream has closed: its RST_STREAM code (0 after a clean end) and the trailers, if any came. */
  closed: Promise<{ rstCode: number; trailers: Record<string, string> | undefined }>;
}

/**
 * Sends a request and leaves the answer unread: the stream starts paused, so
 * node:http2 stops granting the server flow-control window once its buffer is
 * full, as a client that does not read would.
 */
export function openWireStream(session: http2.ClientHttp2Session, req: WireRequest): WireStream {
  const stream = session.request({ ":method": "POST", ":path": req.path, "content-type": "application/grpc", te: "trailers", ...req.headers });
  stream.pause();
  let trailers: Record<string, string> | undefined;
  stream.on("trailers", (t) => (trailers = plain(t)));
  stream.on("error", () => {}); // the close event says how it ended
  const response = new Promise<Record<string, string>>((resolve) => stream.once("response", (h) => resolve(plain(h))));
  const closed = new Promise<{ rstCode: number; trailers: Record<string, string> | undefined }>((resolve) =>
    stream.once("close", () => resolve({ rstCode: stream.rstCode ?? 0, trailers })),
  );
  stream.end(req.body);
  return { stream, response, closed };
}
