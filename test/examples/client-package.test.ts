import { mkdtempSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { killAll } from "../support/processes.js";
import type { ServerProcess } from "../support/built-server.js";
import { newTenant } from "../support/server.js";
import { root, run, startBuiltServer } from "./support/commands.js";

// The package's `orchestrator-state/client` export as a user's project gets it
// (npm's `file:` or `link:` dependency): the build in dist/ (npm run
// test:examples builds first), its JavaScript run by Node and its declarations
// type-checked by TypeScript, from a project outside the repository.
let server: ServerProcess;
let project: string;

beforeAll(async () => {
  server = await startBuiltServer();
  project = mkdtempSync(path.join(tmpdir(), "client-user-"));
  mkdirSync(path.join(project, "node_modules"));
  symlinkSync(root, path.join(project, "node_modules", "orchestrator-state"), "dir");
  writeFileSync(path.join(project, "package.json"), JSON.stringify({ type: "module", private: true }));
  writeFileSync(
    path.join(project, "main.ts"),
    [
      'import { createStateClients, WorkflowStatus } from "orchestrator-state/client";',
      "const [baseUrl, tenantId] = process.argv.slice(2);",
      "const state = createStateClients({ baseUrl: baseUrl!, tenantId, protocol: \"connect\" });",
      'await state.workflowState.saveWorkflowExecution({ execution: { executionId: "from-dist", workflowName: "w", status: WorkflowStatus.RUNNING } });',
      'const { execution } = await state.workflowState.getWorkflowExecution({ executionId: "from-dist" });',
      "const status: string = WorkflowStatus[execution!.status];",
      "console.log(JSON.stringify({ id: execution!.executionId, status }));",
      "state.close();",
      "// Proves the types are real, not `any`: a misspelt field must not compile.",
      "export function typo() {",
      "  // @ts-expect-error executionIdd is not a field",
      '  return state.workflowState.getWorkflowExecution({ executionIdd: "x" });',
      "}",
      "",
    ].join("\n"),
  );
  writeFileSync(
    path.join(project, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: {
        target: "ES2022", module: "NodeNext", moduleResolution: "NodeNext", strict: true,
        types: ["node"], typeRoots: [path.join(root, "node_modules/@types")], outDir: "out", skipLibCheck: false,
      },
      files: ["main.ts"],
    }),
  );
});
afterAll(() => {
  killAll();
  rmSync(project, { recursive: true, force: true });
});

describe("orchestrator-state/client, built", () => {
  it("type-checks and runs in a project of its own", async () => {
    await run(path.join(root, "node_modules/.bin/tsc"), ["-p", project], { cwd: project });
    const { stdout } = await run(process.execPath, [path.join(project, "out/main.js"), server.baseUrl, newTenant()], { cwd: project });
    expect(JSON.parse(stdout)).toEqual({ id: "from-dist", status: "RUNNING" });
  });
});
