// Bundles the page (src/main.js with its CSS and cytoscape) into the directory given as the only
// argument: index.html, main.js, main.css. build.rs runs it with OUT_DIR/web; `npm run build`
// with dist/ for working on the page.
import { copyFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import * as esbuild from "esbuild";

const out = process.argv[2];
if (!out) {
  console.error("usage: node build.mjs OUT_DIR");
  process.exit(2);
}
await mkdir(out, { recursive: true });
await esbuild.build({
  entryPoints: ["src/main.js"],
  bundle: true,
  minify: true,
  format: "iife",
  target: "es2020",
  outdir: out,
  logLevel: "warning",
  legalComments: "eof",
});
await copyFile("src/index.html", join(out, "index.html"));
