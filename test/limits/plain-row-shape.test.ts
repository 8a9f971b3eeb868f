import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

// byteBounded (src/db/queries/byte-bounded.ts) and the claim batch
// (execution-leases.ts) read helper columns with every row and take them off
// with dropTrailingColumns (src/db/models/plain-rows.ts) before handing the
// rows on. How they are taken off decides whether the row stays a fast object
// or becomes a dictionary, slower to read field by field for the encoders
// after it. V8 reports that only to code run with --allow-natives-syntax: a
// child process builds a row with pg's own Result, as the driver does, and
// checks it.

const plainRows = fileURLToPath(new URL("../../src/db/models/plain-rows.ts", import.meta.url));

/** Runs `body` (JavaScript, with `drop`: dropTrailingColumns, and `Result`: pg's) in a child; returns what it printed. */
function inChild(body: string): string {
  const code = `
    import { createRequire } from "node:module";
    const { dropTrailingColumns: drop } = await import(${JSON.stringify(plainRows)});
    const Result = createRequire(${JSON.stringify(plainRows)})("pg/lib/result");
    const fast = new Function("o", "return %HasFastProperties(o)");
    ${body}`;
  const child = spawnSync(process.execPath, ["--allow-natives-syntax", "--import", "tsx", "--input-type=module", "-e", code], { encoding: "utf8" });
  expect(child.stderr).toBe("");
  return child.stdout.trim();
}

describe("rows read with helper columns", () => {
  it("lose the helper columns and stay fast objects, as pg built them", () => {
    const out = inChild(`
      const columns = ["tenant_id", "execution_id", "context", "stored_bytes", "kept", "followed"];
      const result = new Result();
      result.addFields(columns.map((name) => ({ name, format: "text", dataTypeID: 25 })));
      const row = result.parseRow(columns.map((c) => c + "-value"));
      const before = fast(row);
      drop(row, ["kept", "followed"]);
      console.log(JSON.stringify({ before, after: fast(row), keys: Object.keys(row) }));
      // What the rows would be deleting the helpers first to last: a dictionary.
      const other = result.parseRow(columns.map((c) => c + "-value"));
      for (const c of ["kept", "followed"]) delete other[c];
      console.log(JSON.stringify({ firstToLast: fast(other) }));`);
    const [dropped, firstToLast] = out.split("\n").map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(dropped).toEqual({ before: true, after: true, keys: ["tenant_id", "execution_id", "context", "stored_bytes"] });
    // The check can tell the two apart on this V8: otherwise it proves nothing.
    expect(firstToLast).toEqual({ firstToLast: false });
  });
});
