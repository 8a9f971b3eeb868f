// What `npm start` runs once its build check is done: package.json's start
// script after its `&& exec `, node with its flags and the built entry. The
// Dockerfile's CMD is the same command (test/lifecycle/container.test.ts);
// the tests' built server (built-server.ts) and the benchmark's server
// (bench/lib/processes.ts) run with these flags too, so that what they
// measure is the server as deployed (its memory depends on the V8 flags).
import * as fs from "node:fs";
import * as path from "node:path";

const root = path.resolve(import.meta.dirname, "../..");

/** npm start's command after its build check: ["node", ...flags, "dist/src/main.js"]. */
export function startCommand(): string[] {
  const pkg = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8")) as { scripts: Record<string, string> };
  const command = pkg.scripts.start!.split(" && exec ")[1];
  if (command === undefined) throw new Error(`package.json's start script does not end with "&& exec node ...": ${pkg.scripts.start}`);
  return command.split(" ");
}

/** The node flags of npm start's command (between node and the entry). */
export function startNodeFlags(): string[] {
  return startCommand().slice(1, -1);
}
