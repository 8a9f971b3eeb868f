import type { IncomingHttpHeaders } from "node:http2";

// Headers with its methods typed as methods (undici's types declare them as
// readonly properties, which a subclass cannot override in TypeScript).
interface HeadersMethods {
  append(name: string, value: string): void;
  delete(name: string): void;
  get(name: string): string | null;
  has(name: string): boolean;
  set(name: string, value: string): void;
  getSetCookie(): string[];
  forEach(callback: (value: string, key: string, parent: Headers) => void, thisArg?: unknown): void;
  keys(): IterableIterator<string>;
  values(): IterableIterator<string>;
  entries(): IterableIterator<[string, string]>;
  [Symbol.iterator](): IterableIterator<[string, string]>;
}
const HeadersClass = Headers as unknown as new () => HeadersMethods;

// A header name Headers accepts (an HTTP token); others go to Headers itself, which throws.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * The request headers of a call on the gRPC fast path, as Connect's adapter
 * gives them (nodeHeaderToWebHeader: every header but the HTTP/2
 * pseudo-headers, several values joined), copied into the Headers only when
 * needed. `get` and `has`, all that interceptors usually call (the API key,
 * x-tenant-id), answer straight from node:http2's header object, with
 * Headers' own normalization (lowercase name, value trimmed of HTTP
 * whitespace); any other method first copies every header in, then behaves as
 * Headers does. Copying them eagerly was a visible share of a no-op call
 * (undici validates each name and value), the more so with a gRPC client's
 * eight or so headers.
 */
export class NodeRequestHeaders extends HeadersClass {
  #node: IncomingHttpHeaders | undefined;

  constructor(node: IncomingHttpHeaders) {
    super();
    this.#node = node;
  }

  /** The headers of a request, typed as what they are: Headers. */
  static of(node: IncomingHttpHeaders): Headers {
    return new NodeRequestHeaders(node) as unknown as Headers;
  }

  override get(name: string): string | null {
    const node = this.#node;
    if (node === undefined || !TOKEN.test(name)) return this.#copied().#superGet(name);
    // A token has no ":": pseudo-headers are never found.
    const value = node[name.toLowerCase()];
    if (value === undefined) return null;
    return typeof value === "string" ? trimHttpWhitespace(value) : value.map(trimHttpWhitespace).join(", ");
  }

  override has(name: string): boolean {
    const node = this.#node;
    if (node === undefined || !TOKEN.test(name)) return this.#copied().#superHas(name);
    return node[name.toLowerCase()] !== undefined;
  }

  override append(name: string, value: string): void {
    this.#copied();
    super.append(name, value);
  }

  override set(name: string, value: string): void {
    this.#copied();
    super.set(name, value);
  }

  override delete(name: string): void {
    this.#copied();
    super.delete(name);
  }

  override getSetCookie(): string[] {
    this.#copied();
    return super.getSetCookie();
  }

  override forEach(callback: (value: string, key: string, parent: Headers) => void, thisArg?: unknown): void {
    this.#copied();
    super.forEach(callback, thisArg);
  }

  override keys(): IterableIterator<string> {
    this.#copied();
    return super.keys();
  }

  override values(): IterableIterator<string> {
    this.#copied();
    return super.values();
  }

  override entries(): IterableIterator<[string, string]> {
    this.#copied();
    return super.entries();
  }

  override [Symbol.iterator](): IterableIterator<[string, string]> {
    this.#copied();
    return super.entries();
  }

  #superGet(name: string): string | null {
    return super.get(name);
  }

  #superHas(name: string): boolean {
    return super.has(name);
  }

  /** Copies the node:http2 headers in, once (nodeHeaderToWebHeader's loop). */
  #copied(): this {
    const node = this.#node;
    if (node === undefined) return this;
    this.#node = undefined;
    for (const name in node) {
      if (name.charCodeAt(0) === 58 /* ":" */) continue;
      const value = node[name];
      if (value === undefined) continue;
      if (typeof value === "string") super.append(name, value);
      else for (const v of value) super.append(name, v);
    }
    return this;
  }
}

// Headers trims leading and trailing HTTP whitespace (tab, LF, CR, space) from values.
function trimHttpWhitespace(value: string): string {
  if (value.length === 0 || (!isWs(value.charCodeAt(0)) && !isWs(value.charCodeAt(value.length - 1)))) return value;
  return value.replace(/^[\t\n\r ]+|[\t\n\r ]+$/g, "");
}

function isWs(c: number): boolean {
  return c === 0x09 || c === 0x0a || c === 0x0d || c === 0x20;
}
