// `npm run --silent hash-key < key.txt`: prints the SHA-256 (hex) of the API
// key read from stdin (one trailing newline ignored), the value of a key
// entry's "sha256". Read from stdin so that the key stays out of shell history
// and process lists.
import { text } from "node:stream/consumers";
import { hashKey } from "./key-store.js";

const key = (await text(process.stdin)).replace(/\r?\n$/, "");
if (key === "") {
  process.stderr.write("hash-key: give the key on stdin, e.g. npm run --silent hash-key < key.txt\n");
  process.exit(2);
}
process.stdout.write(`${hashKey(key)}\n`);
