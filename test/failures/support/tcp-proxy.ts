import * as net from "node:net";

/**
 * A TCP proxy between the server and a real database that a test can break:
 * `cut()` destroys every connection and stops listening (the database is
 * gone: connections reset, new ones refused), `restore()` listens again on the
 * same port, `stall()` keeps the connections open but stops passing bytes (a
 * network partition: nothing answers), `unstall()` passes what was held back,
 * and `heal()` ends the partition the way a real network does for a peer that
 * vanished: new connections work, while the connections open during the
 * stall stay silent for good (neither closed nor answered), as when a NAT or
 * a failover forgot them.
 */
export class TcpProxy {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  private readonly resumers = new Set<() => void>();
  private stalled = false;
  /** Connections that `heal()` left behind: they never pass a byte again. */
  private readonly dead = new WeakSet<net.Socket>();
  private port = 0;

  constructor(private readonly target: { host: string; port: number }) {}

  /** Starts listening on 127.0.0.1 (an ephemeral port the first time, the same port afterwards). */
  async listen(): Promise<number> {
    const server = net.createServer((client) => this.accept(client));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.port, "127.0.0.1", () => {
        server.off("error", reject);
        resolve();
      });
    });
    this.server = server;
    this.port = (server.address() as net.AddressInfo).port;
    return this.port;
  }

  /** Reserves an ephemeral port without listening on it yet (the database is "down" from the start). */
  async reservePort(): Promise<number> {
    await this.listen();
    await this.cut();
    return this.port;
  }

  /** The database goes away: every connection is destroyed and new ones are refused. */
  async cut(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
    this.resumers.clear();
    this.stalled = false;
    if (server !== undefined) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** The database comes back on the same port. */
  restore(): Promise<number> {
    return this.listen();
  }

  /** Bytes stop flowing both ways; connections stay open. */
  stall(): void {
    this.stalled = true;
  }

  /** Bytes flow again, starting with those held back. */
  unstall(): void {
    this.stalled = false;
    for (const resume of this.resumers) resume();
    this.resumers.clear();
  }

  /**
   * The partition ends for new connections only: every connection open now
   * stays silent and open for good (what it held back is dropped), while
   * connections made from now on pass bytes both ways.
   */
  heal(): void {
    for (const socket of this.sockets) this.dead.add(socket);
    this.resumers.clear();
    this.stalled = false;
  }

  /** Open client-side connections. */
  get connections(): number {
    return this.sockets.size / 2;
  }

  private accept(client: net.Socket): void {
    const upstream = net.connect(this.target.port, this.target.host);
    this.sockets.add(client);
    this.sockets.add(upstream);
    const forward = (from: net.Socket, to: net.Socket) => {
      const held: Buffer[] = [];
      from.on("data", (chunk: Buffer) => {
        if (this.dead.has(from)) return;
        if (!this.stalled && held.length === 0) {
          to.write(chunk);
          return;
        }
        held.push(chunk);
        this.resumers.add(() => {
          for (const c of held.splice(0)) to.write(c);
        });
      });
    };
    forward(client, upstream);
    forward(upstream, client);
    const close = () => {
      client.destroy();
      upstream.destroy();
      this.sockets.delete(client);
      this.sockets.delete(upstream);
    };
    for (const s of [client, upstream]) {
      s.on("error", close);
      s.on("close", close);
    }
  }
}

/** The host and port a PostgreSQL URL points at. */
export function databaseTarget(databaseUrl: string): { host: string; port: number } {
  const url = new URL(databaseUrl);
  return { host: url.hostname || "127.0.0.1", port: Number(url.port || 5432) };
}

/** The same PostgreSQL URL, pointed at `port` on 127.0.0.1 (a TcpProxy). */
export function proxiedUrl(databaseUrl: string, port: number): string {
  const url = new URL(databaseUrl);
  url.hostname = "127.0.0.1";
  url.port = String(port);
  return url.toString();
}
