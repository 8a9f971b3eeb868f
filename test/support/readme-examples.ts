// The README's `buf curl` examples, as test/readme-examples.test.ts and
// test/readme-replicas.test.ts run them: "Running several replicas" is one
// shell session (its blocks share variables: the fencing tokens); the other
// examples run one by one. Two files, so that the two workers run them side
// by side: the walk-through sleeps past a lease.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import * as path from "node:path";

/** The repository's root, where the examples run from. */
export const root = path.resolve(import.meta.dirname, "../..");
export const readme = readFileSync(path.join(root, "README.md"), "utf8");

/** The address the README's examples call; the tests put their server's there. */
export const README_ADDRESS = "http://127.0.0.1:50051";
/** The tenant of the README's examples. */
export const README_TENANT = "0b8d4f0e-2a51-4c67-9f5e-3c1d2e4f5a60";

/** Where "Running several replicas" starts in the README (-1 if it does not). */
export const replicasStart = readme.indexOf("\n## Running several replicas\n");
const replicasEnd = readme.indexOf("\n## ", replicasStart + 1);
const inReplicas = (index: number) => index > replicasStart && index < replicasEnd;

/** Every `npx buf curl` example outside "Running several replicas", one command each, in README order. */
export const examples = [...readme.matchAll(/```sh\n([\s\S]*?)```/g)]
  .filter((m) => !inReplicas(m.index))
  .map((m) => m[1]!.replace(/\\\n\s*/g, " ").trim())
  .filter((command) => command.startsWith("npx buf curl"));

/** The shell blocks of "Running several replicas", joined into one script. */
export const replicasSession = [...readme.slice(replicasStart, replicasEnd).matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!).join("\n");

/**
 * The executable npx's buf (node_modules/.bin/buf, a node script) starts: the
 * one platform package of @bufbuild/buf that npm installed, or that script
 * when there is none. Starting node first costs about as much CPU again as
 * the call itself.
 */
function bufExecutable(): string {
  const scope = path.join(root, "node_modules/@bufbuild");
  const platform = readdirSync(scope).find((name) => name.startsWith("buf-") && existsSync(path.join(scope, name, "bin/buf")));
  return platform === undefined ? path.join(root, "node_modules/.bin/buf") : path.join(scope, platform, "bin/buf");
}

/**
 * A bash prelude after which `npx buf` runs the repository's buf, the one npx
 * resolves it to (bufExecutable), without starting npm and node first: npx
 * costs most of a second of CPU per call, and the README's examples make 48
 * calls. Each file still runs one `npx buf` through npx itself
 * (readme-examples.test.ts its first example, readme-replicas.test.ts its
 * last check), so that the commands as written are known to resolve.
 */
export const npxBufShortcut = `npx() { if [ "$1" = buf ]; then shift; ${JSON.stringify(bufExecutable())} "$@"; else command npx "$@"; fi; }\n`;
