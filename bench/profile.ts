// CPU profiles of a server under one of B1-B4: ours (dist/src/main.js, run
// `npm run build` first) or the peer (bench/baselines/peer-server.ts), pinned
// and driven as `npm run bench` drives them, profiled in-process over the
// measured window only (bench/lib/cpu-probe.mjs), summarized as self time per
// group (our code, Connect, protobuf, pg driver, Knex/Objection, Node core,
// V8 builtins, GC, idle) in µs per call, and the top functions.
//
//   npx tsx bench/profile.ts                                   # B1-B4, ours and the peer, 8 s each
//   npx tsx bench/profile.ts --workloads=B1,B3-save --targets=ours --seconds=10 --out=/tmp/profiles
//   npx tsx bench/profile.ts --from=/tmp/profiles                # summarize the profiles of an earlier run again
//
// The .cpuprofile files stay in --out (open them in Chrome DevTools or
// speedscope); the summary is printed as markdown.
import { randomUUID } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { TENANT_HEADER } from "../src/tenancy/tenant-interceptor.js";
import { cpuSecondsOf, freePort, LOAD_CORE, ROOT, runPinnedJson, SERVER_CORE, startPinned, stop, waitForServer } from "./lib/processes.js";
import { saveExecutions } from "./lib/seed.js";
import type { Measurement } from "./lib/stats.js";
import type { UnaryWorkload } from "./workloads.js";

const args = process.argv.slice(2);
const arg = (name: string, fallback: string) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback;
const workloads = arg("workloads", "B1,B2,B3-save,B3-get,B4").split(",") as UnaryWorkload[];
const targets = arg("targets", "ours,peer").split(",") as ("ours" | "peer")[];
const seconds = Number(arg("seconds", "8"));
const from = args.find((a) => a.startsWith("--from="))?.slice("--from=".length);
const outDir = from ?? (args.some((a) => a.startsWith("--out=")) ? path.resolve(arg("out", "")) : fs.mkdtempSync(path.join(os.tmpdir(), "orchestrator-profiles-")));
const databaseUrl = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const POOL_MAX = 10;
const WARMUP_S = 2;
fs.mkdirSync(outDir, { recursive: true });

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/**
 * The group a function's self time counts to, from its script's URL. Native
 * functions (V8 builtins such as JSON.parse, Node's bindings such as writev)
 * count to the group of the nearest JavaScript caller (see summarize).
 */
function group(frame: ProfileNode["callFrame"]): string {
  const { functionName: f, url } = frame;
  if (f === "(idle)") return "idle";
  if (f === "(garbage collector)") return "GC";
  if (f === "(program)") return "V8 and native (program)";
  if (url === "") return "native";
  if (url === "node:inspector") return "the profiler itself";
  if (url.startsWith("node:")) return "Node core (http2, net, streams)";
  if (url.includes("/@connectrpc/")) return "Connect";
  if (url.includes("/@bufbuild/") || url.includes("/gen/")) return "protobuf";
  if (url.includes("/@grpc/")) return "grpc-js";
  if (/\/node_modules\/(pg|pg-protocol|pg-pool|pg-types|pg-connection-string|postgres-[a-z]+)\//.test(url)) return "pg driver";
  if (url.includes("/node_modules/knex/")) return "Knex";
  if (url.includes("/node_modules/objection/")) return "Objection";
  if (url.includes("/node_modules/tsx/") || url.includes("/node_modules/esbuild")) return "tsx loader";
  const pkg = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url)?.[1];
  if (pkg !== undefined) return `other packages (${pkg})`;
  if (url.includes("/bench/")) return "peer's code";
  if (url.includes("/src/")) return "our code (src/)";
  return "other";
}

function summarize(profile: Profile, calls: number): { groups: [string, number][]; top: [string, number][]; busyUsPerCall: number; busyShare: number } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, ProfileNode>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n);
  /** A native function's nearest JavaScript caller (itself when it is JavaScript). */
  const caller = (node: ProfileNode): ProfileNode => {
    let n: ProfileNode | undefined = node;
    while (n !== undefined && n.callFrame.url === "" && !n.callFrame.functionName.startsWith("(")) n = parent.get(n.id);
    return n ?? node;
  };
  const groups = new Map<string, number>();
  const functions = new Map<string, number>();
  let busy = 0;
  let all = 0;
  profile.samples.forEach((id, i) => {
    const node = byId.get(id)!;
    const us = profile.timeDeltas[i] ?? 0;
    all += us;
    const js = caller(node);
    const g = group(js.callFrame);
    groups.set(g, (groups.get(g) ?? 0) + us);
    if (g === "idle") return;
    busy += us;
    const where = js.callFrame.url.replace(/^file:\/\//, "").replace(`${ROOT}/`, "").replace(/^.*node_modules\//, "");
    const from = js === node ? "" : ` (native, from ${js.callFrame.functionName || "(anonymous)"})`;
    const name = `${node.callFrame.functionName || "(anonymous)"}${from} ${where}${where ? `:${js.callFrame.lineNumber + 1}` : ""}`;
    functions.set(name, (functions.get(name) ?? 0) + us);
  });
  const perCall = (us: number) => us / calls;
  return {
    groups: [...groups].sort((a, b) => b[1] - a[1]).map(([g, us]) => [g, perCall(us)]),
    top: [...functions].sort((a, b) => b[1] - a[1]).slice(0, 12).map(([f, us]) => [f, perCall(us)]),
    busyUsPerCall: perCall(busy),
    busyShare: busy / all,
  };
}

async function profileOne(target: "ours" | "peer", workload: UnaryWorkload): Promise<string> {
  const port = await freePort();
  const name = `${workload}-${target}`;
  const log = path.join(outDir, `${name}.log`);
  const profileFile = path.join(outDir, `${name}.cpuprofile`);
  fs.rmSync(profileFile, { force: true });
  const probe = ["--import", path.join(ROOT, "bench/lib/cpu-probe.mjs")];
  const env = { BENCH_CPU_PROFILE: profileFile };
  const child =
    target === "ours"
      ? startPinned(SERVER_CORE, path.join(ROOT, "dist/src/main.js"), [], { ...env, HOST: "127.0.0.1", PORT: String(port), DATABASE_URL: databaseUrl, DATABASE_POOL_MAX: String(POOL_MAX) }, log, probe)
      : startPinned(SERVER_CORE, path.join(ROOT, "bench/baselines/peer-server.ts"), [String(port)], { ...env, DATABASE_URL: databaseUrl, POOL_MAX: String(POOL_MAX) }, log, probe);
  try {
    await waitForServer(port, child, log);
    const url = `http://127.0.0.1:${port}`;
    const tenant = randomUUID();
    if (workload.startsWith("B3")) await saveExecutions(url, tenant, 32);
    const pid = child.pid!;
    // The generator warms up for WARMUP_S, then measures `seconds`; the
    // profile starts after its warm-up (and its own start, ~0.5 s) and stops
    // before its end.
    const load = runPinnedJson<Measurement & { allCalls: number }>(LOAD_CORE, "bench/load/grpc-load.ts", [
      JSON.stringify({ url, workload, inflight: workload === "B2" ? 4 : 32, seconds: seconds + 1, warmupSeconds: WARMUP_S, headers: { [TENANT_HEADER]: tenant } }),
    ]);
    await new Promise((resolve) => setTimeout(resolve, (WARMUP_S + 0.5) * 1000));
    process.kill(pid, "SIGUSR2");
    const cpu0 = cpuSecondsOf(pid);
    await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
    const cpuUs = (cpuSecondsOf(pid) - cpu0) * 1e6;
    process.kill(pid, "SIGUSR2");
    const m = await load;
    for (let i = 0; i < 100 && !fs.existsSync(profileFile); i++) await new Promise((resolve) => setTimeout(resolve, 100));
    const meta: Meta = { workload, target, rate: m.rate, seconds, cpuUsPerCall: cpuUs / (m.rate * seconds) };
    fs.writeFileSync(path.join(outDir, `${name}.json`), JSON.stringify(meta));
    return summary(meta, profileFile);
  } finally {
    await stop(child);
  }
}

/** What a profile was taken under: bench/profile.ts --from=DIR summarizes again from it and the .cpuprofile. */
interface Meta {
  workload: UnaryWorkload;
  target: "ours" | "peer";
  rate: number;
  seconds: number;
  cpuUsPerCall: number;
}

function summary(meta: Meta, profileFile: string): string {
  const s = summarize(JSON.parse(fs.readFileSync(profileFile, "utf8")) as Profile, meta.rate * meta.seconds);
  const lines = [
    `### ${meta.workload}, ${meta.target}: ${Math.round(meta.rate).toLocaleString("en")} calls/s; CPU ${Math.round(meta.cpuUsPerCall).toLocaleString("en")} µs/call (/proc, all threads); profiled (main thread) ${Math.round(s.busyUsPerCall).toLocaleString("en")} µs/call, busy ${Math.round(100 * s.busyShare)}% of the window`,
    "",
    "| group | µs/call | share of busy |",
    "|---|---:|---:|",
    ...s.groups.filter(([g]) => g !== "idle").map(([g, us]) => `| ${g} | ${us.toFixed(0)} | ${((100 * us) / s.busyUsPerCall).toFixed(0)}% |`),
    "",
    "| top self time | µs/call |",
    "|---|---:|",
    ...s.top.map(([f, us]) => `| \`${f}\` | ${us.toFixed(0)} |`),
    "",
  ];
  return lines.join("\n");
}

if (from !== undefined) {
  for (const file of fs.readdirSync(from).filter((f) => f.endsWith(".json")).sort()) {
    console.log(summary(JSON.parse(fs.readFileSync(path.join(from, file), "utf8")) as Meta, path.join(from, file.replace(/\.json$/, ".cpuprofile"))));
  }
  process.exit(0);
}

for (const workload of workloads) {
  for (const target of targets) {
    const summary = await profileOne(target, workload);
    console.log(summary);
    fs.appendFileSync(path.join(outDir, "summary.md"), `${summary}\n`);
  }
}
console.error(`profiles and summary.md in ${outDir}`);
