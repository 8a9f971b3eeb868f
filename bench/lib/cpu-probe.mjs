// Preloaded into a server by bench/profile.ts
// (node --import bench/lib/cpu-probe.mjs ...): the first SIGUSR2 starts V8's
// CPU profiler in-process, the second stops it and writes the profile
// (.cpuprofile, as `node --cpu-prof` writes it) to BENCH_CPU_PROFILE. So the
// profile covers the measured window only, not startup or shutdown.
import * as fs from "node:fs";
import * as inspector from "node:inspector";

const file = process.env.BENCH_CPU_PROFILE;
if (file === undefined) throw new Error("cpu-probe: needs BENCH_CPU_PROFILE");
const session = new inspector.Session();
session.connect();
let profiling = false;
const post = (method, params = {}) =>
  new Promise((resolve, reject) => session.post(method, params, (err, result) => (err ? reject(err) : resolve(result))));
process.on("SIGUSR2", async () => {
  if (!profiling) {
    profiling = true;
    await post("Profiler.enable");
    await post("Profiler.setSamplingInterval", { interval: 200 });
    await post("Profiler.start");
    return;
  }
  const { profile } = await post("Profiler.stop");
  fs.writeFileSync(file, JSON.stringify(profile));
});
