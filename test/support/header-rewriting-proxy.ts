import * as net from "node:net";

// node:http2's client refuses to send a single-value header (authorization)
// twice (ERR_HTTP2_HEADER_SINGLE_VALUE), and Node 20 takes no raw header list.
// This loopback proxy, which the test owns, lets a test send any header list
// anyway: it passes every byte through, except the HEADERS frame that opens
// stream 1 of each connection, whose header block it replaces with `headers`,
// HPACK-encoded as literals without indexing (RFC 7541, 6.2.2; no Huffman).
// The server's answer is passed back untouched, for node:http2 to read.

/** A header field as sent: name and value, in order; names may repeat. */
export type HeaderField = [name: string, value: string];

export interface HeaderRewritingProxy {
  /** http://127.0.0.1:<port>, to connect to instead of the server. */
  url: string;
  close(): Promise<void>;
}

const PREFACE_BYTES = 24; // "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
const HEADERS = 0x1;
const END_STREAM = 0x1;
const END_HEADERS = 0x4;

/** Starts a proxy to `targetPort` on 127.0.0.1 that sends `headers` as the request headers of stream 1. */
export async function startHeaderRewritingProxy(targetPort: number, headers: HeaderField[]): Promise<HeaderRewritingProxy> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, "127.0.0.1");
    sockets.add(client).add(upstream);
    for (const s of [client, upstream]) {
      s.on("error", () => {
        client.destroy();
        upstream.destroy();
      });
      s.on("close", () => sockets.delete(s));
    }
    upstream.pipe(client);
    let pending = Buffer.alloc(0);
    let prefaceLeft = PREFACE_BYTES;
    let rewritten = false;
    client.on("data", (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      if (prefaceLeft > 0) {
        const n = Math.min(prefaceLeft, pending.length);
        upstream.write(pending.subarray(0, n));
        pending = pending.subarray(n);
        prefaceLeft -= n;
      }
      while (prefaceLeft === 0 && pending.length >= 9) {
        const length = pending.readUIntBE(0, 3);
        if (pending.length < 9 + length) break;
        const frame = pending.subarray(0, 9 + length);
        pending = pending.subarray(9 + length);
        const type = frame[3]!;
        const flags = frame[4]!;
        const streamId = frame.readUInt32BE(5) & 0x7fffffff;
        if (type === HEADERS && streamId === 1 && !rewritten) {
          if ((flags & END_HEADERS) === 0) throw new Error("the request's headers did not fit one frame");
          rewritten = true;
          upstream.write(headersFrame(streamId, (flags & END_STREAM) | END_HEADERS, encodeHeaderBlock(headers)));
        } else {
          upstream.write(frame);
        }
      }
    });
    client.on("end", () => upstream.end());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

function headersFrame(streamId: number, flags: number, block: Buffer): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(block.length, 0, 3);
  head[3] = HEADERS;
  head[4] = flags;
  head.writeUInt32BE(streamId, 5);
  return Buffer.concat([head, block]);
}

/** Literal header fields without indexing, new names, no Huffman coding. */
function encodeHeaderBlock(headers: HeaderField[]): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of headers) {
    parts.push(Buffer.from([0x00]), stringLiteral(name), stringLiteral(value));
  }
  return Buffer.concat(parts);
}

function stringLiteral(s: string): Buffer {
  const bytes = Buffer.from(s, "utf8");
  return Buffer.concat([integer(bytes.length, 7), bytes]);
}

/** An HPACK integer with an N-bit prefix (the H bit of a string literal left 0). */
function integer(value: number, prefixBits: number): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([value]);
  const out = [max];
  let rest = value - max;
  while (rest >= 128) {
    out.push((rest % 128) + 128);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
  return Buffer.from(out);
}
