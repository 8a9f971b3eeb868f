import type { ExecutionWriter } from "./execution-writer.js";

// A google.protobuf.Struct written straight from JSON text, as PostgreSQL
// prints a jsonb value: the reads of executions keep their context as that
// text (a JsonText; KEEP_TEXT in src/db/queries/workflow-executions.ts), and
// this writes the bytes that JSON.parse then execution-binary.ts's
// writeStructFields would write, without building the parsed objects or
// walking them. B5's server spent about 4 µs (8%) less CPU per streamed row
// with it (docs/performance.md, "The context as text"), and about 4 µs less
// again once it read the text's UTF-8 bytes rather than its characters
// ("The context as bytes").
//
// The bytes must be exactly those of the general path
// (test/workflow-state/context-as-text.test.ts, on generated values and on
// the jsonb text of both backends). Where that takes more than one pass over
// the text, this declines, having written nothing, and the caller parses
// the text instead:
// - a key that starts with a digit: JSON.parse puts integer-like keys
//   ("0", "17") first, in numeric order, so the order of the text is not the
//   order of Object.keys;
// - the key "__proto__", which JSON.parse keeps as an own key and everything
//   after handles specially;
// - a top-level value that is not an object (a Struct holds an object; the
//   general path owns what happens to anything else);
// - nesting deeper than MAX_DEPTH (the general path recurses as deep as the
//   value goes; this one does not pretend to be safer);
// - text not as jsonb prints it: space other than one after each `,` and
//   `:`, a number with an exponent, anything not JSON (JSON.parse owns the
//   error).
// A string with an escape is read with JSON.parse (of that string alone) and
// written like any other; any other string is copied as its UTF-8 bytes.
//
// Keys are taken as unique, as jsonb's text has them (jsonb keeps the last of
// duplicate keys, and prints each key once); for text with duplicate keys the
// bytes would differ from JSON.parse's (which keeps the last value at the first
// key's place).

/** Objects and arrays nested deeper than this take the general path. */
const MAX_DEPTH = 256;

// Tags (field number << 3 | wire type) of google.protobuf.Struct, Value and ListValue fields.
const STRUCT_FIELDS = 0x0a; // map<string, Value> fields = 1
const ENTRY_KEY = 0x0a; // map entry: string key = 1
const ENTRY_VALUE = 0x12; // map entry: Value value = 2
const NULL_VALUE = 0x08; // Value: NullValue null_value = 1
const NUMBER_VALUE = 0x11; // Value: double number_value = 2
const STRING_VALUE = 0x1a; // Value: string string_value = 3
const BOOL_VALUE = 0x20; // Value: bool bool_value = 4
const STRUCT_VALUE = 0x2a; // Value: Struct struct_value = 5
const LIST_VALUE = 0x32; // Value: ListValue list_value = 6
const LIST_VALUES = 0x0a; // ListValue: repeated Value values = 1

// Character codes.
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const SPACE = 0x20;

/** Thrown inside to decline (see above); never leaves this module. */
class Declined {}
const DECLINED = new Declined();

/** Texts up to this many UTF-16 units are encoded into one scratch buffer, kept (192 KiB); longer ones into their own. */
const SCRATCH_UNITS = 64 * 1024;
const encoder = new TextEncoder();
const decoder = new TextDecoder();
// A UTF-16 unit takes at most 3 bytes of UTF-8.
let scratch = new Uint8Array(3 * 2048 + 1);

/** Powers of ten a double holds exactly (10^0 to 10^22). */
const EXACT_POWERS_OF_TEN = Array.from({ length: 23 }, (_, k) => Number(`1e${k}`));

/**
 * Writes the fields of the Struct that the jsonb text `text` holds, as
 * writeStructFields would write JSON.parse(text), and returns true; returns
 * false, having written nothing, where the general path must do it.
 *
 * The text is read as UTF-8, encoded once up front (one native call), so
 * that a string is a run of bytes copied as they are, whatever its
 * characters: reading the text a character at a time (charCodeAt) took
 * about twice as long, and sent every string outside ASCII through
 * JSON.parse.
 */
export function writeStructFromJsonText(w: ExecutionWriter, text: string): boolean {
  const at = w.position();
  // The text's UTF-8, then a 0 after it: a byte no string may hold, where bytesUntilQuote stops.
  let src: Uint8Array;
  if (text.length <= SCRATCH_UNITS) {
    if (scratch.length <= 3 * text.length) scratch = new Uint8Array(3 * SCRATCH_UNITS + 1);
    src = scratch;
  } else {
    src = new Uint8Array(Buffer.byteLength(text, "utf8") + 1);
  }
  const length = encoder.encodeInto(text, src).written;
  src[length] = 0;
  try {
    if (src[0] !== OPEN_BRACE) return false;
    const reader = new Reader(w, src, length);
    reader.objectFields(0);
    if (reader.i !== length) throw DECLINED;
    return true;
  } catch (err) {
    if (err !== DECLINED) throw err;
    w.truncate(at);
    return false;
  }
}

/**
 * Reads jsonb's text, as UTF-8 bytes: no space but one after each `,` and
 * `:`; anything else (other JSON text included) is declined. Reading past
 * `length` gives 0, which no test below accepts where a byte is expected.
 */
class Reader {
  i = 0;
  constructor(
    readonly w: ExecutionWriter,
    readonly src: Uint8Array,
    readonly length: number,
  ) {}

  /** The byte at `i`, or 0 past the text's end (the scratch buffer holds older bytes there). */
  at(i: number): number {
    return i < this.length ? this.src[i]! : 0;
  }

  /** At `{`: writes each member as a Struct field (tag 1, a map entry), up to and over `}`. */
  objectFields(depth: number): void {
    if (depth > MAX_DEPTH) throw DECLINED;
    const w = this.w;
    let i = this.i + 1;
    if (this.at(i) === CLOSE_BRACE) {
      this.i = i + 1;
      return;
    }
    for (;;) {
      if (this.at(i) !== QUOTE) throw DECLINED;
      const c = this.at(i + 1);
      // JSON.parse puts integer-like keys first, and keeps "__proto__" as an own key (see above).
      if ((c >= 0x30 && c <= 0x39) || (c === 0x5f && this.isProto(i + 1))) throw DECLINED;
      const entry = w.open(STRUCT_FIELDS);
      w.byte(ENTRY_KEY);
      this.i = i;
      this.string();
      i = this.i;
      if (this.at(i) !== COLON || this.at(i + 1) !== SPACE) throw DECLINED;
      this.i = i + 2;
      const value = w.open(ENTRY_VALUE);
      this.value(depth);
      w.end(value);
      w.end(entry);
      i = this.i;
      const next = this.at(i);
      if (next === CLOSE_BRACE) {
        this.i = i + 1;
        return;
      }
      if (next !== COMMA || this.at(i + 1) !== SPACE) throw DECLINED;
      i += 2;
    }
  }

  /** At `[`: writes each element as a ListValue value, up to and over `]`. */
  listValues(depth: number): void {
    if (depth > MAX_DEPTH) throw DECLINED;
    const w = this.w;
    this.i++;
    if (this.at(this.i) === CLOSE_BRACKET) {
      this.i++;
      return;
    }
    for (;;) {
      const item = w.open(LIST_VALUES);
      this.value(depth);
      w.end(item);
      const i = this.i;
      const next = this.at(i);
      if (next === CLOSE_BRACKET) {
        this.i = i + 1;
        return;
      }
      if (next !== COMMA || this.at(i + 1) !== SPACE) throw DECLINED;
      this.i = i + 2;
    }
  }

  /** Any JSON value as the fields of a google.protobuf.Value. */
  value(depth: number): void {
    const w = this.w;
    const c = this.at(this.i);
    if (c === QUOTE) {
      w.byte(STRING_VALUE);
      this.string();
    } else if (c === OPEN_BRACE) {
      const struct = w.open(STRUCT_VALUE);
      this.objectFields(depth + 1);
      w.end(struct);
    } else if (c === OPEN_BRACKET) {
      const list = w.open(LIST_VALUE);
      this.listValues(depth + 1);
      w.end(list);
    } else if (c === 0x74 /* t */) {
      this.word(TRUE);
      w.byte(BOOL_VALUE);
      w.byte(1);
    } else if (c === 0x66 /* f */) {
      this.word(FALSE);
      w.byte(BOOL_VALUE);
      w.byte(0);
    } else if (c === 0x6e /* n */) {
      this.word(NULL);
      w.byte(NULL_VALUE);
      w.byte(0);
    } else {
      w.byte(NUMBER_VALUE);
      w.double(this.number());
    }
  }

  /** At `word`'s first byte: steps over it. */
  word(word: readonly number[]): void {
    if (!this.follows(this.i, word)) throw DECLINED;
    this.i += word.length;
  }

  /** Whether the bytes at `i` are `"__proto__"` without its first quote. */
  isProto(i: number): boolean {
    return this.follows(i, PROTO_KEY);
  }

  follows(i: number, bytes: readonly number[]): boolean {
    for (let k = 0; k < bytes.length; k++) if (this.at(i + k) !== bytes[k]) return false;
    return true;
  }

  /**
   * A number as jsonb prints it (numeric's text: an optional "-", digits
   * without a leading zero, optionally "." and digits; never an exponent),
   * as JSON.parse reads it. Up to 15 significant digits, it is the digits as
   * an integer divided by a power of ten: both are exact doubles, so the one
   * division rounds correctly, to JSON.parse's double. Any other is Number()
   * of its text.
   */
  number(): number {
    const start = this.i;
    let i = start;
    const negative = this.at(i) === 0x2d; /* - */
    if (negative) i++;
    const first = i;
    let digits = 0;
    let c = this.at(i);
    while (c >= 0x30 && c <= 0x39) {
      digits = digits * 10 + (c - 0x30);
      c = this.at(++i);
    }
    const integerDigits = i - first;
    if (integerDigits === 0 || (integerDigits > 1 && this.at(first) === 0x30)) throw DECLINED;
    let fractionDigits = 0;
    if (c === 0x2e /* . */) {
      c = this.at(++i);
      const fraction = i;
      while (c >= 0x30 && c <= 0x39) {
        digits = digits * 10 + (c - 0x30);
        c = this.at(++i);
      }
      fractionDigits = i - fraction;
      if (fractionDigits === 0) throw DECLINED;
    }
    if (c === 0x65 || c === 0x45) throw DECLINED; // e, E: jsonb never prints an exponent
    this.i = i;
    // "-0" is -0, as JSON.parse reads it.
    if (integerDigits + fractionDigits <= 15) return (negative ? -digits : digits) / EXACT_POWERS_OF_TEN[fractionDigits]!;
    return Number(decoder.decode(this.src.subarray(start, i)));
  }

  /**
   * A JSON string at its `"`, written as a length-prefixed UTF-8 string.
   * Its bytes are copied as they are; a string with an escape is read with
   * JSON.parse (of that string alone) and written by the writer.
   */
  string(): void {
    const start = this.i + 1;
    const end = this.w.bytesUntilQuote(this.src, start);
    if (end !== -1) {
      this.i = end + 1;
      return;
    }
    let i = start;
    for (;;) {
      const c = this.at(i);
      if (c === QUOTE) break;
      if (i >= this.length) throw DECLINED; // the text ended inside the string
      i += c === BACKSLASH ? 2 : 1;
    }
    this.i = i + 1;
    // JSON.parse rejects what JSON does not allow (a raw control character, a bad escape).
    let value: string;
    try {
      value = JSON.parse(decoder.decode(this.src.subarray(start - 1, i + 1))) as string;
    } catch {
      throw DECLINED;
    }
    this.w.string(value);
  }
}

const ascii = (word: string): readonly number[] => Array.from(word, (c) => c.charCodeAt(0));
const TRUE = ascii("true");
const FALSE = ascii("false");
const NULL = ascii("null");
const PROTO_KEY = ascii('__proto__"');
