import { existsSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";

// docs/architecture.md names the file of every step of a call and the home of
// every concern: a file renamed or moved must take the doc with it.
const root = path.resolve(import.meta.dirname, "../..");
const doc = readFileSync(path.join(root, "docs/architecture.md"), "utf8");

/** Repository paths the doc names (templates such as `<service>` and globs left out). */
function namedPaths(): string[] {
  const candidates = doc.match(/(?:src|test|proto|gen|web|docs)\/[\w./-]*/g) ?? [];
  const migrations = (doc.match(/\b\d{14}_[\w]+\.ts\b/g) ?? []).map((name) => `src/db/migrations/${name}`);
  return [...new Set([...candidates, ...migrations])].filter((p) => !p.includes("<") && !p.includes("*"));
}

describe("docs/architecture.md", () => {
  it("names only files and folders that exist", () => {
    const paths = namedPaths();
    expect(paths.length).toBeGreaterThan(40);
    expect(paths.filter((p) => !existsSync(path.join(root, p.replace(/[.,)]+$/, ""))))).toEqual([]);
  });
});
