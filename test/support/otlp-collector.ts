import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";

// An OpenTelemetry collector in the test's process: an HTTP server that takes
// OTLP/HTTP trace exports (POST /v1/traces), in protobuf or JSON, and keeps
// the spans. The protobuf decoder reads just the fields the tests look at, by
// their numbers in opentelemetry-proto's trace.proto and common.proto.

/** One exported span, ids in lowercase hex. */
export interface CollectedSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  /** SpanKind: 1 internal, 2 server, 3 client. */
  kind: number;
  attributes: Record<string, string | number | boolean>;
  /** The service.name of the span's resource. */
  serviceName: string;
}

/** A running collector. */
export interface Collector {
  /** Where to export: http://127.0.0.1:PORT/v1/traces. */
  url: string;
  spans: CollectedSpan[];
  /** Content types of the exports received. */
  contentTypes: string[];
  close(): Promise<void>;
}

export async function startCollector(): Promise<Collector> {
  const spans: CollectedSpan[] = [];
  const contentTypes: string[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      const type = req.headers["content-type"] ?? "";
      contentTypes.push(type);
      if (req.url !== "/v1/traces") {
        res.writeHead(404).end();
        return;
      }
      spans.push(...(type.includes("json") ? fromJson(JSON.parse(body.toString("utf8"))) : fromProtobuf(body)));
      res.writeHead(200, { "content-type": type }).end(type.includes("json") ? "{}" : undefined);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`,
    spans,
    contentTypes,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

type Json = Record<string, unknown>;

function fromJson(body: Json): CollectedSpan[] {
  const out: CollectedSpan[] = [];
  for (const rs of (body.resourceSpans as Json[] | undefined) ?? []) {
    const resource = attributesOf(((rs.resource as Json | undefined)?.attributes as Json[] | undefined) ?? []);
    for (const ss of (rs.scopeSpans as Json[] | undefined) ?? []) {
      for (const s of (ss.spans as Json[] | undefined) ?? []) {
        out.push({
          traceId: String(s.traceId ?? "").toLowerCase(),
          spanId: String(s.spanId ?? "").toLowerCase(),
          parentSpanId: String(s.parentSpanId ?? "").toLowerCase(),
          name: String(s.name),
          kind: Number(s.kind),
          attributes: attributesOf((s.attributes as Json[] | undefined) ?? []),
          serviceName: String(resource["service.name"] ?? ""),
        });
      }
    }
  }
  return out;
}

function attributesOf(list: Json[]): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const kv of list) {
    const v = (kv.value ?? {}) as Json;
    const value = v.stringValue ?? v.boolValue ?? (v.intValue !== undefined ? Number(v.intValue) : v.doubleValue);
    if (value !== undefined) out[String(kv.key)] = value as string | number | boolean;
  }
  return out;
}

/** Calls `each(fieldNo, wireType, reader)` for each field of a message; `each` must read or skip the value. */
function fields(bytes: Uint8Array, each: (no: number, wt: WireType, r: BinaryReader) => boolean): void {
  const r = new BinaryReader(bytes);
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    if (!each(no, wt, r)) r.skip(wt);
  }
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

function fromProtobuf(body: Uint8Array): CollectedSpan[] {
  const out: CollectedSpan[] = [];
  fields(body, (no, _wt, r) => {
    if (no !== 1) return false; // resource_spans
    const resourceSpans = r.bytes();
    let serviceName = "";
    const scopeSpans: Uint8Array[] = [];
    fields(resourceSpans, (n, _w, rr) => {
      if (n === 1) serviceName = String(kvs(rr.bytes(), 1)["service.name"] ?? "");
      else if (n === 2) scopeSpans.push(rr.bytes());
      else return false;
      return true;
    });
    for (const ss of scopeSpans) {
      fields(ss, (n, _w, rr) => {
        if (n !== 2) return false; // spans
        out.push({ ...span(rr.bytes()), serviceName });
        return true;
      });
    }
    return true;
  });
  return out;
}

function span(bytes: Uint8Array): Omit<CollectedSpan, "serviceName"> {
  const s = { traceId: "", spanId: "", parentSpanId: "", name: "", kind: 0, attributes: {} as CollectedSpan["attributes"] };
  fields(bytes, (no, _wt, r) => {
    if (no === 1) s.traceId = hex(r.bytes());
    else if (no === 2) s.spanId = hex(r.bytes());
    else if (no === 4) s.parentSpanId = hex(r.bytes());
    else if (no === 5) s.name = r.string();
    else if (no === 6) s.kind = r.int32();
    else if (no === 9) Object.assign(s.attributes, kvs(r.bytes(), 0));
    else return false;
    return true;
  });
  return s;
}

/** KeyValue entries: a message holding them as field `listField`, or (0) one KeyValue. */
function kvs(bytes: Uint8Array, listField: number): CollectedSpan["attributes"] {
  const out: CollectedSpan["attributes"] = {};
  const one = (kv: Uint8Array) => {
    let key = "";
    let value: string | number | boolean | undefined;
    fields(kv, (no, _wt, r) => {
      if (no === 1) key = r.string();
      else if (no === 2) {
        fields(r.bytes(), (vn, _vw, vr) => {
          if (vn === 1) value = vr.string();
          else if (vn === 2) value = vr.bool();
          else if (vn === 3) value = Number(vr.int64());
          else if (vn === 4) value = vr.double();
          else return false;
          return true;
        });
      } else return false;
      return true;
    });
    if (value !== undefined) out[key] = value;
  };
  if (listField === 0) one(bytes);
  else fields(bytes, (no, _wt, r) => (no === listField ? (one(r.bytes()), true) : false));
  return out;
}
