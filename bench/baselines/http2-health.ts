// Baseline of B0: grpc.health.v1.Health/Check answering SERVING on bare
// node:http2, the least a gRPC server in Node can do per call: read the
// enveloped request, decode it, encode the answer, send headers, message and
// trailers. Listens on 127.0.0.1:<argv[2]>.
import * as http2 from "node:http2";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { HealthCheckRequestSchema, HealthCheckResponseSchema } from "../../gen/health/v1/health_pb.js";
import { checkResponse } from "./health-answer.js";

const server = http2.createServer();
server.on("stream", (stream, headers) => {
  if (headers[":path"] !== "/grpc.health.v1.Health/Check") {
    stream.respond({ ":status": 200, "content-type": "application/grpc", "grpc-status": "12" }, { endStream: true });
    return;
  }
  const chunks: Buffer[] = [];
  stream.on("data", (c: Buffer) => chunks.push(c));
  stream.on("end", () => {
    const body = Buffer.concat(chunks);
    const request = fromBinary(HealthCheckRequestSchema, body.subarray(5, 5 + body.readUInt32BE(1)));
    const message = toBinary(HealthCheckResponseSchema, checkResponse(request));
    const out = Buffer.allocUnsafe(5 + message.length);
    out[0] = 0;
    out.writeUInt32BE(message.length, 1);
    out.set(message, 5);
    stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
    stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
    stream.end(out);
  });
});
server.listen(Number(process.argv[2]), "127.0.0.1");
