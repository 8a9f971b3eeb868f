// The protobuf writer of the encoding step: messages written one after the
// other into shared chunks (see ExecutionWriter), by execution-binary.ts and
// struct-from-json-text.ts.

const textEncoder = new TextEncoder();

/** Bytes of a fresh chunk of an ExecutionWriter (more when one message needs more). */
const CHUNK_BYTES = 256 * 1024;

/**
 * An append-only protobuf writer, reused from row to row. Messages are written
 * one after the other into a chunk and handed out as views of it (no copy per
 * message); a message that does not fit moves to a fresh chunk, and the old
 * chunk is collected once the messages viewing it are. Length-delimited
 * values are written like @bufbuild/protobuf's BinaryWriter does: one byte is
 * reserved for the length (begin), and the value is shifted when its length
 * needs more (end).
 */
export class ExecutionWriter {
  private buf = new Uint8Array(CHUNK_BYTES);
  private view = new DataView(this.buf.buffer);
  /** Where the next byte goes. */
  private pos = 0;
  /** Where the message being written starts; begin() positions are relative to it. */
  private start = 0;

  /**
   * The message written since the last finish(), as a view that stays valid.
   * A message that needed a chunk larger than the usual one gets that chunk
   * trimmed to its size, and the writer starts a usual chunk again: a stream
   * that sent one 2 MB execution does not keep a 4 MiB chunk for good, nor
   * does a message waiting for a slow client hold more than its own bytes.
   */
  finish(): Uint8Array {
    if (this.buf.length > CHUNK_BYTES && this.start === 0) {
      const out = this.buf.slice(0, this.pos);
      this.buf = new Uint8Array(CHUNK_BYTES);
      this.view = new DataView(this.buf.buffer);
      this.pos = 0;
      return out;
    }
    const out = this.buf.subarray(this.start, this.pos);
    this.start = this.pos;
    return out;
  }

  /** Drops what was written since the last finish() (a message that failed part way). */
  discard(): void {
    this.pos = this.start;
  }

  /** Makes room for `bytes` more bytes. */
  ensure(bytes: number): void {
    if (this.pos + bytes > this.buf.length) this.grow(bytes);
  }

  private grow(bytes: number): void {
    const used = this.pos - this.start;
    let size = CHUNK_BYTES;
    while (size < 2 * (used + bytes)) size *= 2;
    const chunk = new Uint8Array(size);
    chunk.set(this.buf.subarray(this.start, this.pos));
    this.buf = chunk;
    this.view = new DataView(chunk.buffer);
    this.pos = used;
    this.start = 0;
  }

  /** One byte: a tag of a field numbered up to 15, or a varint below 128. */
  byte(value: number): void {
    this.ensure(1);
    this.buf[this.pos++] = value;
  }

  /** An unsigned varint below 2^32. */
  uint32(value: number): void {
    this.ensure(5);
    const buf = this.buf;
    let pos = this.pos;
    while (value > 0x7f) {
      buf[pos++] = (value & 0x7f) | 0x80;
      value >>>= 7;
    }
    buf[pos++] = value;
    this.pos = pos;
  }

  /** An int64 varint of a safe integer (negative: ten bytes, two's complement). */
  int64(value: number): void {
    if (value >= 0 && value <= 0xffff_ffff) {
      this.uint32(value);
      return;
    }
    // Rare (timestamps before 1970 or after 2106): BigInt is simplest.
    this.bigint64(BigInt(value));
  }

  /** An int64 varint of any int64 (a fencing token). */
  bigint64(value: bigint): void {
    if (value >= 0n && value <= 0xffff_ffffn) {
      this.uint32(Number(value));
      return;
    }
    let rest = BigInt.asUintN(64, value);
    this.ensure(10);
    while (rest > 0x7fn) {
      this.buf[this.pos++] = Number(rest & 0x7fn) | 0x80;
      rest >>= 7n;
    }
    this.buf[this.pos++] = Number(rest);
  }

  double(value: number): void {
    this.ensure(8);
    this.view.setFloat64(this.pos, value, true);
    this.pos += 8;
  }

  /** A length-prefixed UTF-8 string (lone surrogates become U+FFFD, as with TextEncoder). */
  string(value: string): void {
    const n = value.length;
    if (n < 0x80) {
      // ASCII fast path: one length byte.
      this.ensure(n + 1);
      const buf = this.buf;
      const lengthAt = this.pos;
      let p = lengthAt + 1;
      let i = 0;
      for (; i < n; i++) {
        const c = value.charCodeAt(i);
        if (c > 0x7f) break;
        buf[p++] = c;
      }
      if (i === n) {
        buf[lengthAt] = n;
        this.pos = p;
        return;
      }
    }
    // A UTF-16 unit takes at most 3 bytes; guess the length prefix from the
    // unit count and shift the text if the guess was wrong.
    this.ensure(n * 3 + 5);
    const at = this.pos;
    const guess = varintSize(n);
    const { written } = textEncoder.encodeInto(value, this.buf.subarray(at + guess, at + guess + n * 3));
    const size = varintSize(written);
    if (size !== guess) this.buf.copyWithin(at + size, at + guess, at + guess + written);
    this.uint32(written);
    this.pos += written;
  }

  /**
   * A length-prefixed string of the UTF-8 bytes of `src` from `from` up to
   * the next `"`, when none is `\\` or below 0x20: returns the index of that
   * `"`. Returns -1, having written nothing, at a `\\`, at any byte below
   * 0x20 (`src` must hold one after its text, so the end of the text returns
   * here), or at the end of the chunk (the caller writes that string another
   * way).
   */
  bytesUntilQuote(src: Uint8Array, from: number): number {
    this.ensure(1);
    const buf = this.buf;
    const end = buf.length;
    // One byte is reserved for the length, as begin() does; moved when the string needs more.
    const at = this.pos;
    let p = at + 1;
    let i = from;
    for (;;) {
      const c = src[i]!;
      if (c === 0x22) break;
      if (c < 0x20 || c === 0x5c || p === end) return -1;
      buf[p++] = c;
      i++;
    }
    const n = p - at - 1;
    if (n < 0x80) {
      buf[at] = n;
      this.pos = p;
      return i;
    }
    const size = varintSize(n);
    if (p + size - 1 > end) return -1;
    buf.copyWithin(at + size, at + 1, p);
    this.pos = at;
    this.uint32(n);
    this.pos = p + size - 1;
    return i;
  }

  /** Where the message being written is now, to pass to truncate(). */
  position(): number {
    return this.pos - this.start;
  }

  /** Drops what was written since `position()` returned `at`. */
  truncate(at: number): void {
    this.pos = this.start + at;
  }

  /** Length-prefixed bytes. */
  bytes(value: Uint8Array): void {
    this.uint32(value.length);
    this.raw(value);
  }

  /** Bytes as they are. */
  raw(value: Uint8Array): void {
    this.ensure(value.length);
    this.buf.set(value, this.pos);
    this.pos += value.length;
  }

  /** Starts a length-delimited value: returns its mark, to pass to end(). */
  begin(): number {
    this.ensure(1);
    return this.pos++ - this.start;
  }

  /** Writes a one-byte tag and begins its length-delimited value (see begin). */
  open(tagByte: number): number {
    this.ensure(2);
    this.buf[this.pos++] = tagByte;
    return this.pos++ - this.start;
  }

  /** Ends the value begun at `mark`: writes its length before it. */
  end(mark: number): void {
    const at = this.start + mark;
    const length = this.pos - at - 1;
    if (length < 0x80) {
      this.buf[at] = length;
      return;
    }
    const size = varintSize(length);
    this.ensure(size - 1);
    const buf = this.buf; // ensure() may have moved the message: recompute
    const from = this.start + mark;
    buf.copyWithin(from + size, from + 1, this.pos);
    let pos = from;
    let value = length;
    while (value > 0x7f) {
      buf[pos++] = (value & 0x7f) | 0x80;
      value >>>= 7;
    }
    buf[pos] = value;
    this.pos += size - 1;
  }
}

/** The bytes of `value` as a varint (below 2^32). */
export function varintSize(value: number): number {
  return value < 0x80 ? 1 : value < 0x4000 ? 2 : value < 0x20_0000 ? 3 : value < 0x1000_0000 ? 4 : 5;
}
