import { Code, ConnectError } from "@connectrpc/connect";

/** One enveloped message of a gRPC body: the flags byte and the payload. */
export interface Envelope {
  flags: number;
  data: Uint8Array;
}

/**
 * Splits the body of a unary gRPC request into enveloped messages as its
 * chunks arrive, like Connect's `transformSplitEnvelope`: an envelope whose
 * declared length exceeds `readMaxBytes` is refused as soon as its 5-byte
 * header is in (RESOURCE_EXHAUSTED, with Connect's message), before its
 * payload is buffered. A payload is copied out of the chunks once, when it is
 * complete (a large message arriving in many chunks is concatenated once, not
 * per chunk), into its own Uint8Array as Connect does: `bytes` fields decoded
 * from it are then plain Uint8Arrays that keep no socket buffer alive.
 *
 * Only the first two envelopes are kept: a unary request has one, and the
 * answer to more does not depend on the third.
 */
export class RequestEnvelopes {
  first: Envelope | undefined;
  second: Envelope | undefined;
  private chunks: Buffer[] | undefined;
  private size = 0;
  /** Bytes needed before the next step can be taken: a header (5), or a header and its payload. */
  private need = 5;

  constructor(private readonly readMaxBytes: number) {}

  /** Bytes of an envelope that has not fully arrived (at the end of the body: an incomplete envelope). */
  get pendingBytes(): number {
    return this.size;
  }

  /** Takes the next chunk of the body; throws RESOURCE_EXHAUSTED for an envelope above readMaxBytes. */
  push(chunk: Buffer): void {
    let buf: Buffer;
    if (this.size === 0) {
      // The usual case: the whole request in one chunk, read in place.
      if (chunk.byteLength < this.need) {
        this.chunks = [chunk];
        this.size = chunk.byteLength;
        return;
      }
      buf = chunk;
    } else {
      this.chunks!.push(chunk);
      this.size += chunk.byteLength;
      if (this.size < this.need) return;
      buf = Buffer.concat(this.chunks!, this.size);
    }
    let offset = 0;
    this.need = 5;
    while (buf.byteLength - offset >= 5) {
      const length = buf.readUInt32BE(offset + 1);
      if (length > this.readMaxBytes) {
        // Connect's assertReadMaxBytes, word for word.
        throw new ConnectError(
          `message size ${length} is larger than configured readMaxBytes ${this.readMaxBytes}`,
          Code.ResourceExhausted,
        );
      }
      if (buf.byteLength - offset - 5 < length) {
        this.need = 5 + length;
        break;
      }
      if (this.second === undefined) {
        const data = new Uint8Array(length);
        data.set(buf.subarray(offset + 5, offset + 5 + length));
        const envelope = { flags: buf[offset]!, data };
        if (this.first === undefined) this.first = envelope;
        else this.second = envelope;
      }
      offset += 5 + length;
    }
    const rest = buf.subarray(offset);
    this.chunks = rest.byteLength === 0 ? undefined : [rest];
    this.size = rest.byteLength;
  }
}
