import * as http from "node:http";
import * as https from "node:https";
import type { StaticAsset } from "./static-assets.js";

/** A Node request handler: the server's Connect adapter (connectNodeAdapter serves node:http too). */
export type NodeHandler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

/**
 * The dashboard's HTTP/1.1 server: browsers cannot speak h2c, so the page and
 * the RPCs it calls share this port (same origin: no CORS). GET and HEAD of a
 * bundle file answer it from memory; every other request goes to `rpcs`, the
 * same Connect handler, routes and interceptors as the main port, so a
 * browser is authenticated, bound to its tenant and limited like any client.
 * With TLS files it serves HTTPS, so API keys never cross the network in
 * clear when the main port does not either.
 */
export function createDashboardServer(rpcs: NodeHandler, assets: ReadonlyMap<string, StaticAsset>, tls: { cert: Buffer; key: Buffer } | undefined): http.Server {
  const listener = (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (req.method === "GET" || req.method === "HEAD") {
      const asset = assets.get(pathOf(req.url));
      if (asset !== undefined) {
        serveAsset(req, res, asset);
        return;
      }
    }
    rpcs(req, res);
  };
  return tls === undefined ? http.createServer(listener) : https.createServer({ cert: tls.cert, key: tls.key }, listener);
}

function pathOf(url: string | undefined): string {
  const q = (url ?? "/").indexOf("?");
  return q === -1 ? (url ?? "/") : url!.slice(0, q);
}

function serveAsset(req: http.IncomingMessage, res: http.ServerResponse, asset: StaticAsset): void {
  if (req.headers["if-none-match"] === asset.etag) {
    res.writeHead(304, { etag: asset.etag, "cache-control": asset.headers["cache-control"]! });
    res.end();
    return;
  }
  res.writeHead(200, asset.headers);
  res.end(req.method === "HEAD" ? undefined : asset.body);
}
