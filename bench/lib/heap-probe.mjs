// Preloaded into our server for B5 and B6 by bench/run.ts
// (node --expose-gc --import bench/lib/heap-probe.mjs dist/src/main.js): on
// SIGUSR2, which the load generator sends at the mark row and at the last
// row, two full collections, then the V8 heap in use appended as one JSON
// line to BENCH_HEAP_FILE. The heap after full collections is what the
// memory goal judges: RSS alone also counts what V8 has not given back.
import * as fs from "node:fs";

const file = process.env.BENCH_HEAP_FILE;
if (file === undefined || typeof globalThis.gc !== "function") throw new Error("heap-probe: needs BENCH_HEAP_FILE and node --expose-gc");
process.on("SIGUSR2", () => {
  globalThis.gc();
  globalThis.gc();
  fs.appendFileSync(file, `${JSON.stringify({ at: Date.now(), heapUsedMb: process.memoryUsage().heapUsed / 2 ** 20 })}\n`);
});
