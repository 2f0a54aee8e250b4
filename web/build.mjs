// Bundles the page (src/main.js with its CSS and cytoscape) into the directory given as the only
// argument: index.html, main.js, main.css. build.rs runs it with OUT_DIR/web; `npm run build`
// with dist/ for working on the page. Files whose content did not change are not rewritten, so
// that cargo does not recompile the crate that embeds them.
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import * as esbuild from "esbuild";

const out = process.argv[2];
if (!out) {
  console.error("usage: node build.mjs OUT_DIR");
  process.exit(2);
}

async function writeIfChanged(path, contents) {
  const old = await readFile(path).catch(() => null);
  if (old && Buffer.compare(old, Buffer.from(contents)) === 0) return;
  await writeFile(path, contents);
}

await mkdir(out, { recursive: true });
const result = await esbuild.build({
  entryPoints: ["src/main.js"],
  bundle: true,
  minify: true,
  format: "iife",
  target: "es2020",
  outdir: out,
  write: false,
  logLevel: "warning",
  legalComments: "eof",
});
for (const file of result.outputFiles) {
  await writeIfChanged(join(out, basename(file.path)), file.contents);
}
await writeIfChanged(join(out, "index.html"), await readFile("src/index.html"));
