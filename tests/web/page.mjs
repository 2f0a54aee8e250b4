// Drives the controller's web page in headless Chromium (playwright-core from web/node_modules,
// the system's Chromium): the page loads, its map shows the edges /api/graph reports, it updates
// as traffic changes, the time slider shows an older window's graph, the pairs table sorts
// numerically, and an unreachable API is shown on the page and recovered from. Any console
// error or warning, page error or failed request outside the deliberate outage fails the run.
//
// Usage: node tests/web/page.mjs http://127.0.0.1:PORT/   (CHROMIUM overrides /usr/bin/chromium)
// Exit status 0 when every check passed; each check prints a line.

import { createRequire } from "node:module";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const require = createRequire(new URL("../../web/package.json", import.meta.url));
const { chromium } = require("playwright-core");

const base = process.argv[2];
if (!base) {
  console.error("usage: node page.mjs BASE_URL");
  process.exit(2);
}
const screenshot = process.env.VMDEP_SCREENSHOT;

const t0 = Date.now();
function log(line) {
  console.log(`[page ${((Date.now() - t0) / 1000).toFixed(1)} s] ${line}`);
}

function assert(ok, message) {
  if (!ok) throw new Error(`check failed: ${message}`);
}

async function api(path) {
  const response = await fetch(new URL(`api/${path}`, base));
  assert(response.ok, `${path} answered ${response.status}`);
  return response.json();
}

const edgeIds = (graph) => graph.edges.map((e) => `${e.src_vm}->${e.dst_vm}`).sort();

async function until(what, timeoutMs, probe) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await probe();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

const problems = [];
let outage = false;
const userDataDir = mkdtempSync(join(tmpdir(), "vmdep-chromium-"));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1440, height: 900 },
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
let failed = false;
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("console", (msg) => {
    const kind = msg.type();
    if ((kind === "error" || kind === "warning") && !outage) problems.push(`console ${kind}: ${msg.text()}`);
  });
  page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
  page.on("requestfailed", (req) => {
    if (!outage) problems.push(`request failed: ${req.url()} ${req.failure()?.errorText}`);
  });
  page.on("response", (res) => {
    if (res.status() >= 400 && !outage) problems.push(`${res.status()} for ${res.url()}`);
  });

  const started = Date.now();
  await page.goto(base, { waitUntil: "load" });
  log(`loaded ${base} in ${Date.now() - started} ms`);

  // The map shows the edges the API reports: both read at nearly the same time, so compare the
  // page's edges with the graph fetched just before and just after.
  const pageEdges = () => page.evaluate(() => window.vmdep.map.cy.edges().map((e) => e.id()).sort());
  await until("the map's first edges", 15000, async () => (await pageEdges()).length > 0);
  const matched = await until("the map to show /api/graph's edges", 10000, async () => {
    const before = edgeIds(await api("graph"));
    const shown = await pageEdges();
    const after = edgeIds(await api("graph"));
    const same = (a) => a.length === shown.length && a.every((id, i) => id === shown[i]);
    return (same(before) || same(after)) && shown;
  });
  log(`the map shows the API's ${matched.length} edges`);
  const vms = await page.evaluate(() => window.vmdep.map.cy.nodes(".vm").length);
  const servers = await page.evaluate(() => window.vmdep.map.cy.nodes(".server").length);
  const graph = await api("graph");
  assert(vms === graph.nodes.length, `${vms} VM nodes, the API has ${graph.nodes.length}`);
  assert(servers === new Set(graph.nodes.map((n) => n.server)).size, `${servers} server boxes`);
  const parented = await page.evaluate(() =>
    window.vmdep.map.cy.nodes(".vm").every((n) => n.parent().id() === `srv:${n.data("vm").server}`),
  );
  assert(parented, "every VM sits in its server's box");
  log(`${vms} VMs in ${servers} servers`);
  assert((await page.getAttribute("#status", "data-state")) === "live", "the status says live");

  // Live updates: the window index and the traffic the map shows grow.
  const snapshot = () =>
    page.evaluate(() => ({
      updates: window.vmdep.state.updates,
      window: window.vmdep.state.windows.at(-1)?.index ?? 0,
      bytes: window.vmdep.map.cy.edges().reduce((sum, e) => sum + e.data("bytes"), 0),
      positions: window.vmdep.map.cy.nodes(".vm").map((n) => ({ id: n.id(), ...n.position() })),
    }));
  const first = await snapshot();
  const later = await until("the page to show more traffic in a later window", 10000, async () => {
    const now = await snapshot();
    return now.window > first.window && now.bytes > first.bytes && now;
  });
  log(`updated: window #${first.window} -> #${later.window}, bytes ${first.bytes} -> ${later.bytes}`);
  const moved = later.positions.filter((p, i) => {
    const q = first.positions[i];
    return p.id !== q.id || Math.abs(p.x - q.x) > 0.5 || Math.abs(p.y - q.y) > 0.5;
  });
  assert(moved.length === 0, `VMs kept their places across updates (moved: ${moved.map((p) => p.id)})`);
  const shownText = await page.textContent("#shown");
  assert(/^Live: everything since/.test(shownText), `the shown range is named: ${shownText}`);

  // Hovering an edge measured by a switch tells its exact counts, the switch and the estimate.
  const hovered = await page.evaluate(() => {
    const bySwitch = window.vmdep.map.cy
      .edges()
      .filter((e) => e.data("edge").exact && !e.data("edge").exact.measured_by.startsWith("server:"))
      .sort((a, b) => b.data("bytes") - a.data("bytes"));
    if (bySwitch.empty()) return null;
    bySwitch[0].emit("mouseover");
    return { id: bySwitch[0].id(), exact: bySwitch[0].data("edge").exact, estimate: bySwitch[0].data("edge").estimate };
  });
  assert(hovered, "a pair measured by a switch is on the map");
  const details = await page.textContent("#details");
  assert(details.includes(`switch ${hovered.exact.measured_by}`), `details name the measuring switch: ${details}`);
  assert(details.includes(hovered.exact.packets.toLocaleString("en-US")), `details give the exact packets: ${details}`);
  assert(!hovered.estimate || details.includes("Sampled estimate"), `details give the estimate: ${details}`);
  await page.evaluate((id) => {
    window.vmdep.map.cy.getElementById(id).emit("mouseout");
  }, hovered.id);
  log(`hover on ${hovered.id}: measured by ${hovered.exact.measured_by}, ${hovered.exact.packets} packets`);

  // The slider: an older window, and the graph shown is that window's.
  const windows = await page.evaluate(() => window.vmdep.state.windows);
  assert(windows.length >= 3, `at least three windows to slide over (${windows.length})`);
  const position = windows.length - 3;
  const target = windows[position].index;
  await page.$eval(
    "#slider",
    (el, value) => {
      el.value = String(value);
      el.dispatchEvent(new Event("input", { bubbles: true }));
    },
    position,
  );
  await until(`the page to pause on window #${target}`, 5000, async () => {
    const mode = await page.evaluate(() => [document.body.dataset.mode, document.body.dataset.window]);
    return mode[0] === "paused" && mode[1] === String(target);
  });
  const windowGraph = await api(`graph?window=${target}`);
  const windowShown = await until(`the map to show window #${target}'s edges`, 5000, async () => {
    const shown = await pageEdges();
    const want = edgeIds(windowGraph);
    return shown.length === want.length && shown.every((id, i) => id === want[i]) && shown;
  });
  const statusState = await page.getAttribute("#status", "data-state");
  assert(statusState === "paused", `the status says paused (${statusState})`);
  const liveGraph = await api("graph");
  const liveNow = edgeIds(liveGraph);
  log(`window #${target}: ${windowShown.length} edges (live: ${liveNow.length}), "${await page.textContent("#shown")}"`);
  // A window's edges weigh what was counted (or estimated) in that window, not the totals since
  // the start: the map's bytes are the answer's in_range, and a pair measured before and after
  // the window shows less in it than in all.
  const windowBytes = new Map(windowGraph.edges.map((e) => [`${e.src_vm}->${e.dst_vm}`, e.in_range?.bytes ?? 0]));
  const mapBytes = await page.evaluate(() => window.vmdep.map.cy.edges().map((e) => [e.id(), e.data("bytes")]));
  for (const [id, bytes] of mapBytes) {
    assert(bytes === windowBytes.get(id), `${id} weighs ${bytes} bytes on the map, ${windowBytes.get(id)} in window #${target}`);
  }
  const counted = windowGraph.edges.filter((e) => e.in_range?.exact);
  assert(counted.length >= 2, `at least two pairs counted in window #${target} (${counted.length})`);
  const lessThanAll = counted.filter((e) => {
    const live = liveGraph.edges.find((l) => l.src_vm === e.src_vm && l.dst_vm === e.dst_vm);
    return live?.exact && e.in_range.bytes < live.exact.bytes;
  });
  assert(lessThanAll.length >= 1, `some pair counted less in window #${target} than in all`);
  log(`window #${target} counted: ${counted.map((e) => e.in_range.bytes).sort((a, b) => b - a).join(", ")} bytes`);

  // The pairs table: sorted by a numeric column, both ways.
  await page.click('[data-tab="table"]');
  const sortBy = async (key) => {
    await page.click(`#pair-table th[data-key="${key}"]`);
    return page.$$eval(`#pair-table th[data-key="${key}"]`, (th) => th[0].getAttribute("aria-sort"));
  };
  const tableIds = async () => {
    const ids = await page.$$eval("#pair-table tbody tr[data-id]", (trs) => trs.map((tr) => tr.dataset.id));
    assert(ids.length === windowGraph.edges.length, `a row per edge (${ids.length} of ${windowGraph.edges.length})`);
    return ids;
  };
  const bytesOf = new Map(
    windowGraph.edges.map((e) => [`${e.src_vm}->${e.dst_vm}`, e.in_range?.exact ? e.in_range.bytes : null]),
  );
  const header = await page.textContent('#pair-table th[data-key="bytes"]');
  assert(header === "Bytes in window", `a window's table says its bytes are the window's (${header})`);
  let order = await sortBy("bytes");
  if (order !== "ascending") order = await sortBy("bytes");
  assert(order === "ascending", `bytes sorts ascending (${order})`);
  const ascending = (await tableIds()).map((id) => bytesOf.get(id));
  const numbers = ascending.filter((b) => b !== null);
  assert(numbers.length >= 2, `at least two measured pairs to sort (${numbers.length})`);
  assert(numbers.every((b, i) => i === 0 || numbers[i - 1] <= b), `ascending by bytes: ${ascending}`);
  assert(ascending.indexOf(null) === -1 || ascending.slice(ascending.indexOf(null)).every((b) => b === null), "unmeasured last");
  order = await sortBy("bytes");
  assert(order === "descending", `bytes sorts descending (${order})`);
  const descending = (await tableIds()).map((id) => bytesOf.get(id)).filter((b) => b !== null);
  assert(descending.every((b, i) => i === 0 || descending[i - 1] >= b), `descending by bytes: ${descending}`);
  log(`table sorted by bytes: ${numbers.slice(0, 6).join(" ≤ ")}${numbers.length > 6 ? " ≤ …" : ""}`);

  // The topology tab shows every switch with its load.
  await page.click('[data-tab="topology"]');
  const topology = await api("topology");
  const switchRows = await page.$$eval("#switch-table tbody tr[data-id]", (trs) => trs.map((tr) => tr.dataset.id));
  assert(switchRows.length === topology.switches.length, "a row per switch");
  const loads = await page.evaluate(() => window.vmdep.topology.cy.nodes(".switch").map((n) => n.data("label")));
  assert(loads.every((l) => / \/ [\d,]+ \(/.test(l)), `switches labeled with entries / capacity: ${loads}`);
  log(`topology: ${loads.map((l) => l.replace("\n", " ")).join("; ")}`);

  // Back to live.
  await page.click('[data-tab="map"]');
  await page.click("#live");
  await until("live again", 5000, async () => (await page.getAttribute("#status", "data-state")) === "live");
  if (screenshot) {
    await page.waitForTimeout(1200);
    await page.evaluate((id) => {
      window.vmdep.map.cy.getElementById(id).emit("mouseover");
    }, hovered.id);
    await page.screenshot({ path: screenshot });
    await page.evaluate((id) => {
      window.vmdep.map.cy.getElementById(id).emit("mouseout");
    }, hovered.id);
    log(`screenshot in ${screenshot}`);
  }

  // The API unreachable: the page says so, and recovers.
  outage = true;
  await page.route("**/api/**", (route) => route.abort("connectionrefused"));
  await until("the page to show the outage", 5000, async () => {
    const [state, hidden] = await page.evaluate(() => [
      document.getElementById("status").dataset.state,
      document.getElementById("error").hidden,
    ]);
    return state === "error" && !hidden;
  });
  const banner = await page.textContent("#error");
  assert(/Cannot reach the controller's API/.test(banner), `the banner says why: ${banner}`);
  log(`outage shown: "${banner}"`);
  await page.unroute("**/api/**");
  await until("the page to recover", 5000, async () => (await page.getAttribute("#status", "data-state")) === "live");
  await page.waitForTimeout(300);
  outage = false;
  await page.waitForTimeout(1200);
  assert(await page.isHidden("#error"), "the banner is gone");
  log("recovered from the outage");

  assert(problems.length === 0, `no console error, warning or failed request:\n  ${problems.join("\n  ")}`);
  log(`all checks passed in ${Date.now() - started} ms`);
} catch (err) {
  failed = true;
  console.error(`[page] ${err.stack ?? err}`);
  if (problems.length) console.error(`[page] also seen:\n  ${problems.join("\n  ")}`);
} finally {
  await context.close();
  rmSync(userDataDir, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
