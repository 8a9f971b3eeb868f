// `npm run build`: compiles the server into dist/ (tsc) and bundles the
// dashboard into dist/dashboard/, then writes dist/.build-stamp.
//
// `node scripts/build.mjs --if-stale` (what npm start, npm run migrate and
// npm run hash-key run before the built entry) builds only when dist/ is
// missing or older than a source, and otherwise does nothing and prints
// nothing: a start costs no compilation, and a tree installed with
// `npm ci --omit=dev` (no TypeScript) runs the dist/ it was built with. Its
// lines are JSON, like the server's; `--log-to-stderr` sends them to stderr
// (hash-key's stdout is the hash alone).
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
/** What the build reads: a file here newer than the stamp makes dist/ stale. */
export const SOURCES = ["src", "gen", "web/dashboard", "web/build.ts", "knexfile.ts", "tsconfig.json", "tsconfig.build.json"];
/** Written at the end of a build, with the time the build started as its modification time. */
export const STAMP = "dist/.build-stamp";
const ENTRY = "dist/src/main.js";

/**
 * Why dist/ under `dir` must be built, or undefined when it is up to date:
 * the entry or the stamp is missing, or a source changed after the build began.
 */
export function staleReason(dir = root) {
  if (!fs.existsSync(path.join(dir, ENTRY))) return `${ENTRY} is missing`;
  let stamp;
  try {
    stamp = fs.statSync(path.join(dir, STAMP)).mtimeMs;
  } catch {
    return `${STAMP} is missing`;
  }
  for (const source of SOURCES) {
    const newer = newerThan(path.join(dir, source), stamp);
    if (newer !== undefined) return `${path.relative(dir, newer)} changed after the last build`;
  }
  return undefined;
}

/** The first file under `file` (a file or a directory) modified after `time`, if any. */
function newerThan(file, time) {
  let stat;
  try {
    stat = fs.statSync(file);
  } catch {
    return undefined; // not in this tree (a production image holds dist/ alone)
  }
  if (!stat.isDirectory()) return stat.mtimeMs > time ? file : undefined;
  for (const entry of fs.readdirSync(file, { withFileTypes: true })) {
    const found = newerThan(path.join(file, entry.name), time);
    if (found !== undefined) return found;
  }
  return undefined;
}

/** Whether the build tools (devDependencies) are installed under `dir`. */
export function canBuild(dir = root) {
  return fs.existsSync(path.join(dir, "node_modules/.bin/tsc")) && fs.existsSync(path.join(dir, "node_modules/.bin/tsx"));
}

/**
 * Runs the build under `dir`. `quiet`: the tools' output is captured and
 * returned instead of shown (it goes into a JSON line on failure).
 */
export function build(dir = root, { quiet = false } = {}) {
  const began = Date.now();
  const bin = (name) => path.join(dir, "node_modules/.bin", name);
  for (const [command, args] of [
    [bin("tsc"), ["-p", "tsconfig.build.json"]],
    [bin("tsx"), ["web/build.ts"]],
  ]) {
    const run = spawnSync(command, args, { cwd: dir, stdio: quiet ? "pipe" : "inherit", encoding: "utf8" });
    if (run.status !== 0) {
      const output = `${run.stdout ?? ""}${run.stderr ?? ""}`.trim();
      return { ok: false, step: `${path.basename(command)} ${args.join(" ")}`, output: output || String(run.error ?? `exit code ${run.status}`) };
    }
  }
  fs.writeFileSync(path.join(dir, STAMP), `${new Date(began).toISOString()}\n`);
  fs.utimesSync(path.join(dir, STAMP), began / 1000, began / 1000);
  return { ok: true, durationMs: Date.now() - began };
}

function log(level, msg, fields, toStderr) {
  const line = `${JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields })}\n`;
  (toStderr ? process.stderr : process.stdout).write(line);
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const ifStale = process.argv.includes("--if-stale");
  const toStderr = process.argv.includes("--log-to-stderr");
  if (!ifStale) {
    const result = build(root);
    if (!result.ok) process.exit(1);
    console.log(`built dist/ in ${result.durationMs} ms`);
  } else {
    const reason = staleReason(root);
    if (reason !== undefined) {
      if (!canBuild(root)) {
        if (!fs.existsSync(path.join(root, ENTRY))) {
          log("error", "cannot start: dist/ is not built and the build tools are not installed: run npm ci and npm run build", { reason, exitCode: 1 }, toStderr);
          process.exit(1);
        }
        // A production install (npm ci --omit=dev) whose sources were touched: run what was built.
        log("warn", "dist/ looks older than its sources but the build tools are not installed (npm ci --omit=dev): running dist/ as built", { reason }, toStderr);
      } else {
        log("info", "building dist/ (tsc and the dashboard)", { reason }, toStderr);
        const result = build(root, { quiet: true });
        if (!result.ok) {
          log("error", `cannot start: the build failed at ${result.step}`, { output: result.output.slice(0, 20_000), exitCode: 1 }, toStderr);
          process.exit(1);
        }
        log("info", "built dist/", { durationMs: result.durationMs }, toStderr);
      }
    }
  }
}
