// The Dockerfile cannot be built here (no image registry), so its commands
// must be the ones CI runs without a container: the dependency installs and
// the build of .ci/run, the production install and start of
// test/lifecycle/npm-start.test.ts, and a CMD that is what `npm start` runs.
// README "Container" lists them, and README "Exit codes" lists the codes of
// src/lifecycle/startup.ts; the licence matches package.json.
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.js";
import { EXIT } from "../../src/lifecycle/startup.js";
import { root } from "../support/processes.js";

const read = (file: string) => fs.readFileSync(path.join(root, file), "utf8");
const pkg = JSON.parse(read("package.json")) as { license?: string; scripts: Record<string, string> };

/** The Dockerfile's instructions (continuation lines joined), per stage. */
function stages(): { name: string; instructions: string[] }[] {
  const lines = read("Dockerfile")
    .replace(/\\\n\s*/g, " ")
    .split("\n")
    .filter((l) => l.trim() !== "" && !l.trimStart().startsWith("#"));
  const result: { name: string; instructions: string[] }[] = [];
  for (const line of lines) {
    const from = /^FROM\s+\S+\s+AS\s+(\S+)/i.exec(line);
    if (from) result.push({ name: from[1]!, instructions: [] });
    else result.at(-1)!.instructions.push(line.trim());
  }
  return result;
}

/** The README section under `### title`, up to the next heading. */
function readmeSection(title: string): string {
  const readme = read("README.md");
  const start = readme.indexOf(`### ${title}\n`);
  expect(start, `README has a "${title}" subsection`).toBeGreaterThan(-1);
  const end = readme.slice(start + 4).search(/\n##+ /);
  return readme.slice(start, end === -1 ? undefined : start + 4 + end);
}

describe("Dockerfile", () => {
  const [build, runtime] = stages();

  it("has a build stage (npm ci, npm run build) and a runtime stage (npm ci --omit=dev, dist/ from the build stage)", () => {
    expect(stages().map((s) => s.name)).toEqual(["build", "runtime"]);
    expect(build!.instructions).toContain("RUN npm ci --no-audit --no-fund");
    expect(build!.instructions).toContain("RUN npm run build");
    expect(runtime!.instructions).toContainEqual(expect.stringMatching(/^RUN npm ci --omit=dev --no-audit --no-fund( |$)/));
    expect(runtime!.instructions).toContain("COPY --from=build /app/dist ./dist");
    // Nothing of the build's toolchain or sources in the runtime stage.
    expect(runtime!.instructions.filter((i) => /^COPY (src|gen|web)\b/.test(i))).toEqual([]);
  });

  it("runs as a user other than root", () => {
    const users = runtime!.instructions.filter((i) => i.startsWith("USER "));
    expect(users).toHaveLength(1);
    expect(users[0]).not.toMatch(/^USER (root|0)(:|$)/);
    // The user is set before CMD, so the server never runs as root.
    expect(runtime!.instructions.indexOf(users[0]!)).toBeLessThan(runtime!.instructions.findIndex((i) => i.startsWith("CMD ")));
  });

  it("CMD is exactly what npm start runs after its build check", () => {
    const cmd = runtime!.instructions.find((i) => i.startsWith("CMD "))!;
    const argv = JSON.parse(cmd.slice("CMD ".length)) as string[];
    const start = pkg.scripts.start!;
    expect(start).toMatch(/^node scripts\/build\.mjs --if-stale && exec /);
    expect(argv).toEqual(start.split(" && exec ")[1]!.split(" "));
  });

  it("checks health with /readyz on METRICS_PORT, which the image sets", () => {
    const healthcheck = runtime!.instructions.find((i) => i.startsWith("HEALTHCHECK "))!;
    expect(healthcheck).toContain("/readyz");
    expect(healthcheck).toContain("process.env.METRICS_PORT");
    const env = runtime!.instructions.find((i) => i.startsWith("ENV "))!;
    const settings = Object.fromEntries([...env.matchAll(/(\w+)=(\S+)/g)].map((m) => [m[1]!, m[2]!]));
    // The image's settings are a configuration the server accepts.
    expect(loadConfig(settings)).toMatchObject({ metricsPort: 9464, port: 50051, host: "0.0.0.0", dataDir: "/data" });
  });

  it("README \"Container\" lists each of its commands with the CI step that runs it, and CI runs them", () => {
    const section = readmeSection("Container");
    const instructions = [...build!.instructions, ...runtime!.instructions];
    for (const row of section.matchAll(/^\| `((?:RUN|CMD) [^`]+)` \|/gm)) {
      expect(instructions, row[1]).toContainEqual(expect.stringContaining(row[1]!));
    }
    for (const command of ["RUN npm ci --no-audit --no-fund", "RUN npm run build", "RUN npm ci --omit=dev --no-audit --no-fund", 'CMD ["node"']) {
      expect(section).toContain(command);
    }
    const ci = read(".ci/run");
    expect(ci).toContain("npm ci --no-audit --no-fund");
    expect(ci).toContain("npm run build");
    const npmStartTest = read("test/lifecycle/npm-start.test.ts");
    expect(npmStartTest).toContain('"ci", "--omit=dev"');
  });
});

describe("compose.yaml", () => {
  it("runs the image with PostgreSQL, with a DATABASE_URL the server accepts", () => {
    const compose = read("compose.yaml");
    expect(compose).toMatch(/^ {2}postgres:\n {4}image: postgres:/m);
    expect(compose).toMatch(/^ {2}orchestrator-state:\n {4}build: \./m);
    const url = /DATABASE_URL: (\S+)/.exec(compose)![1]!;
    expect(loadConfig({ DATABASE_URL: url }).databaseUrl).toBe(url);
    expect(compose).toContain("condition: service_healthy");
  });
});

describe("README \"Exit codes\"", () => {
  it("lists every exit code the process uses, and no other", () => {
    const codes = [...readmeSection("Exit codes").matchAll(/^\| `(\d+)` \|/gm)].map((m) => Number(m[1]));
    expect(codes).toEqual(Object.values(EXIT).sort((a, b) => a - b));
  });
});

describe("LICENSE", () => {
  it("is the Apache License 2.0 that package.json names", () => {
    expect(pkg.license).toBe("Apache-2.0");
    const license = read("LICENSE");
    expect(license).toContain("Apache License");
    expect(license).toContain("Version 2.0, January 2004");
    expect(license).toContain("TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION");
  });
});
