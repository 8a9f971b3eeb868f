// Builds the browser dashboard into dist/dashboard/ (npm run build), or into
// another directory (the browser tests build a fresh copy of the sources):
// web/dashboard/main.ts bundled with everything it imports (the generated
// messages and services, @connectrpc/connect-web) into app.js, styles.css
// minified, and index.html and the icon copied. The server serves these files as they are.
import { copyFile, mkdir, rm } from "node:fs/promises";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const root = path.resolve(import.meta.dirname, "..");
const sources = path.join(root, "web", "dashboard");

/** Bundles the dashboard into `outDir` (emptied first); resolves with the bundle's size in bytes. */
export async function buildDashboard(outDir: string = path.join(root, "dist", "dashboard")): Promise<number> {
  await rm(outDir, { recursive: true, force: true });
  await mkdir(outDir, { recursive: true });
  const result = await esbuild.build({
    entryPoints: { app: path.join(sources, "main.ts"), styles: path.join(sources, "styles.css") },
    outdir: outDir,
    bundle: true,
    minify: true,
    format: "esm",
    target: ["es2022"],
    platform: "browser",
    // The bundle is served as it is; a license file per dependency is not.
    legalComments: "none",
    metafile: true,
    logLevel: "warning",
  });
  for (const file of ["index.html", "favicon.svg"]) await copyFile(path.join(sources, file), path.join(outDir, file));
  return Object.values(result.metafile.outputs).reduce((sum, o) => sum + o.bytes, 0);
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const bytes = await buildDashboard();
  console.log(`dashboard built into dist/dashboard (${Math.round(bytes / 1024)} KiB)`);
}
