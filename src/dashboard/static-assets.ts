import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import * as path from "node:path";

/** One file of the dashboard's bundle, held in memory with the headers it is served with. */
export interface StaticAsset {
  body: Buffer;
  headers: Record<string, string>;
  etag: string;
}

/** How the page learns which login form to show: the server's authentication mode. */
export type AuthMode = "api-keys" | "development";

/** The placeholder in index.html (web/dashboard/index.html) that the auth mode replaces. */
export const AUTH_MODE_PLACEHOLDER = "__AUTH_MODE__";

const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
};

// Everything the page loads comes from its own origin, and nothing else runs:
// no inline script or style, no plugin, no framing, no form posted elsewhere.
// The RPCs are same-origin fetches (connect-src 'self'), so no CORS is needed
// and none is allowed.
const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

/** Headers of every static response. */
const SECURITY_HEADERS: Record<string, string> = {
  "content-security-policy": CONTENT_SECURITY_POLICY,
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin",
  // Revalidated on every load (cheap, by etag): a new build is never mixed with an old one.
  "cache-control": "no-cache",
};

/**
 * The built dashboard (`npm run build` writes it to dist/dashboard/), read
 * once into memory by URL path: a fixed set of files, so no request path ever
 * reaches the file system. `/` is index.html, into which `authMode` is
 * written. Throws an Error saying how to build it when it is missing.
 */
export function loadStaticAssets(dir: string, authMode: AuthMode): Map<string, StaticAsset> {
  if (!existsSync(path.join(dir, "index.html"))) {
    throw new Error(`DASHBOARD_PORT is set but the dashboard is not built (no ${path.join(dir, "index.html")}): run npm run build`);
  }
  const assets = new Map<string, StaticAsset>();
  for (const name of readdirSync(dir)) {
    const file = path.join(dir, name);
    const type = CONTENT_TYPES[path.extname(name)];
    if (type === undefined || !statSync(file).isFile()) continue;
    let body = readFileSync(file);
    if (name === "index.html") body = Buffer.from(body.toString("utf8").replaceAll(AUTH_MODE_PLACEHOLDER, authMode));
    const etag = `"${createHash("sha256").update(body).digest("base64url").slice(0, 22)}"`;
    assets.set(`/${name}`, { body, etag, headers: { ...SECURITY_HEADERS, "content-type": type, "content-length": String(body.length), etag } });
  }
  assets.set("/", assets.get("/index.html")!);
  return assets;
}

/**
 * dist/dashboard of this package: found from this module's place, which is
 * src/dashboard/ when run from the sources and dist/src/dashboard/ when built.
 */
export function defaultAssetsDir(): string {
  let dir = import.meta.dirname;
  while (!existsSync(path.join(dir, "package.json"))) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`cannot find the package root above ${import.meta.dirname}`);
    dir = parent;
  }
  return path.join(dir, "dist", "dashboard");
}
