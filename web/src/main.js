// The vmdep controller's page: polls the API once a second and shows the dependency map, the
// topology and the pairs, live or for one past window chosen on the time slider.
//
// For tests and the curious, `window.vmdep` holds the views and the state, and <body> carries
// data-mode, data-window, data-edges and data-updates.

import "./style.css";
import * as api from "./api.js";
import { DependencyMap, edgeBytes, edgeId, isRange, protocols } from "./map.js";
import { TopologyView } from "./topology.js";
import { SortableTable } from "./table.js";
import { protocolColor } from "./colors.js";
import * as fmt from "./format.js";

const POLL_MS = 1000;

const $ = (id) => document.getElementById(id);

const state = {
  /// "live" follows the whole live graph; "paused" shows `window`.
  mode: "live",
  window: null,
  /// The recent windows, {index, at_ms}, oldest first.
  windows: [],
  graph: null,
  topology: null,
  /// The last /api/status answer.
  status: null,
  updates: 0,
  error: null,
  updatedMs: null,
};

const map = new DependencyMap($("map"), { onFocus: showDetails });
const topologyView = new TopologyView($("topology"));

const pairTable = new SortableTable($("pair-table"), {
  key: "bytes",
  descending: true,
  rowId: (row) => fmt.html(row.id),
  render: (row) => [
    fmt.html(row.src),
    fmt.html(row.dst),
    row.protocol
      ? row.protocol
          .split(", ")
          .map((p) => `<span class="tag" style="--tag:${protocolColor(p)}">${fmt.html(p)}</span>`)
          .join(" ")
      : '<span class="muted">–</span>',
    row.measured_by ? fmt.html(row.measured_by) : '<span class="muted">sampled</span>',
    fmt.count(row.packets),
    fmt.bytes(row.bytes),
    fmt.bits(row.bps),
    fmt.count(row.est_packets),
    fmt.bytes(row.est_bytes),
    fmt.percent(row.error),
    `<span title="${fmt.clock(row.last_seen)}">${fmt.age(row.last_seen, controllerNow())}</span>`,
  ],
});

const switchTable = new SortableTable($("switch-table"), {
  key: "name",
  rowId: (row) => fmt.html(row.name),
  render: (row) => [
    fmt.html(row.name),
    row.ready ? '<span class="ok">ready</span>' : '<span class="bad">not ready</span>',
    fmt.count(row.entries),
    fmt.count(row.capacity),
    `<div class="load"><div class="load-bar" style="width:${Math.min(100, row.load * 100)}%"></div><span>${(row.load * 100).toFixed(1)} %</span></div>`,
    fmt.count(row.routes),
    fmt.count(row.reconnections),
    row.last_error ? `<span class="bad">${fmt.html(row.last_error)}</span>` : '<span class="muted">–</span>',
  ],
});

window.vmdep = { map, topology: topologyView, state };

/// Now by the controller's clock (as of its last answer), so that ages do not depend on the
/// browser's clock.
function controllerNow() {
  return state.status ? state.status.now_ms + (Date.now() - state.updatedMs) : Date.now();
}

// ---- Polling --------------------------------------------------------------------------------

let timer = null;
let inFlight = false;
let again = false;

function graphPath() {
  return state.mode === "paused" ? `graph?window=${state.window}` : "graph";
}

/// Polls now, or right after the poll under way.
function pollNow() {
  if (inFlight) {
    again = true;
    return;
  }
  clearTimeout(timer);
  poll();
}

/// The controller keeps its latest 120 window reports (RECENT_WINDOWS); so does the slider.
const KEPT_WINDOWS = 120;

/// Brings `state.windows` up to the controller's last window: appended when it is the next one,
/// else the whole list asked again.
async function syncWindows(last) {
  if (!last) {
    state.windows = [];
    return;
  }
  const known = state.windows.at(-1);
  if (known && known.index === last.index) return;
  if (known && known.index + 1 === last.index) {
    state.windows.push(last);
  } else {
    const windows = await api.get("windows");
    state.windows = windows.map((w) => ({ index: w.index, at_ms: w.at_ms, samples: w.samples }));
  }
  state.windows = state.windows.slice(-KEPT_WINDOWS);
}

async function poll() {
  inFlight = true;
  const asked = graphPath();
  try {
    const [graph, status, topology] = await Promise.all([api.get(asked), api.get("status"), api.get("topology")]);
    if (state.status && state.status.started_ms !== status.started_ms) {
      // Another controller (a restart): its windows are numbered from 1 again.
      state.windows = [];
      if (state.mode === "paused") {
        state.mode = "live";
        again = true;
      }
    }
    await syncWindows(status.last_window);
    state.status = status;
    state.topology = topology;
    // The view changed while this poll was under way: its graph is for the old one.
    if (asked === graphPath()) {
      state.graph = graph;
      state.updates += 1;
    }
    state.error = null;
    state.updatedMs = Date.now();
    render();
  } catch (err) {
    if (state.mode === "paused" && err.status === 404 && err.path.includes("graph?window=")) {
      // The window fell out of the controller's recent windows.
      state.error = `${err.message}; back to live`;
      state.mode = "live";
      again = true;
    } else {
      state.error = err.unreachable
        ? `Cannot reach the controller's API (${err.message}). Retrying every ${POLL_MS / 1000} s` +
          (state.updatedMs ? `; the data shown is from ${fmt.clock(state.updatedMs)}.` : ".")
        : `The controller's API answered with an error: ${err.message}`;
    }
    renderStatus();
  } finally {
    inFlight = false;
    const delay = again ? 0 : POLL_MS;
    again = false;
    timer = setTimeout(poll, delay);
  }
}

// ---- Rendering ------------------------------------------------------------------------------

function render() {
  const graph = state.graph;
  if (graph) {
    const pinned = map.update(graph);
    $("map-empty").hidden = graph.edges.length > 0;
    renderProtocols(graph);
    renderSummary(graph);
    const range = isRange(graph);
    // A window's table counts what was counted in the window; the live one, the totals.
    $("pair-packets").textContent = range ? "Packets in window" : "Packets";
    $("pair-bytes").textContent = range ? "Bytes in window" : "Bytes";
    pairTable.setRows(graph.edges.map((edge) => pairRow(edge, range)));
    if (pinned) showDetails(pinned);
    document.body.dataset.edges = String(graph.edges.length);
  }
  if (state.topology) {
    topologyView.update(state.topology);
    switchTable.setRows(state.topology.switches.map((s) => ({ ...s, state: s.ready ? "ready" : "not ready" })));
  }
  renderSlider();
  renderStatus();
  document.body.dataset.updates = String(state.updates);
}

function pairRow(edge, range) {
  const exact = range ? (edge.in_range?.exact ? edge.in_range : null) : edge.exact;
  return {
    id: edgeId(edge),
    src: edge.src_vm,
    dst: edge.dst_vm,
    protocol: protocols(edge).join(", "),
    measured_by: edge.exact?.measured_by ?? null,
    packets: exact?.packets ?? null,
    bytes: exact?.bytes ?? null,
    bps: edge.exact?.rate?.bps ?? null,
    est_packets: edge.estimate?.packets ?? null,
    est_bytes: edge.estimate?.bytes ?? null,
    error: edge.estimate?.error_percent ?? null,
    last_seen: edge.last_seen_ms,
  };
}

function renderStatus() {
  const status = $("status");
  let key;
  let text;
  if (state.error && state.updatedMs === null) {
    key = "error";
    text = "no connection";
  } else if (state.error) {
    key = "error";
    text = "API error";
  } else if (state.updatedMs === null) {
    key = "connecting";
    text = "connecting";
  } else if (state.mode === "live") {
    key = "live";
    text = "live";
  } else {
    key = "paused";
    text = "paused";
  }
  status.dataset.state = key;
  $("status-text").textContent = text;
  const error = $("error");
  error.hidden = !state.error;
  error.textContent = state.error ?? "";
  document.body.dataset.mode = state.mode;
  document.body.dataset.window = state.mode === "paused" ? String(state.window) : "live";
  if (state.updatedMs) $("updated").textContent = `updated ${fmt.clock(state.updatedMs)}`;
  $("live").classList.toggle("active", state.mode === "live");
  $("shown").textContent = shownText();
}

function shownText() {
  const graph = state.graph;
  if (!graph) return "—";
  if (state.mode === "live") {
    const since = state.status ? fmt.clock(state.status.started_ms) : "–";
    const last = state.windows.at(-1);
    const window = last ? ` · last window #${last.index} at ${fmt.clock(last.at_ms)}` : " · no window yet";
    return `Live: everything since the controller started at ${since}${window}`;
  }
  const i = state.windows.findIndex((w) => w.index === state.window);
  const from = i > 0 ? fmt.clock(state.windows[i - 1].at_ms) : "start";
  const at = i >= 0 ? fmt.clock(state.windows[i].at_ms) : "?";
  const source = graph.source === "history" ? "as recorded in the history" : "from memory";
  return `Window #${state.window}: ${from} – ${at}, ${source}`;
}

function renderSlider() {
  const slider = $("slider");
  const n = state.windows.length;
  slider.disabled = n === 0;
  slider.max = String(Math.max(0, n - 1));
  if (n === 0) {
    $("slider-text").textContent = "no window yet";
    return;
  }
  if (state.mode === "live") {
    slider.value = String(n - 1);
    $("slider-text").textContent = `live (${n} windows kept, #${state.windows[0].index}–#${state.windows[n - 1].index})`;
  } else {
    const i = state.windows.findIndex((w) => w.index === state.window);
    if (i >= 0) slider.value = String(i);
    const w = state.windows[i];
    $("slider-text").textContent = w ? `#${w.index} at ${fmt.clock(w.at_ms)} · ${fmt.count(w.samples)} samples` : `#${state.window}`;
  }
}

function renderProtocols(graph) {
  const seen = new Map();
  for (const edge of graph.edges) for (const p of protocols(edge)) seen.set(p, (seen.get(p) ?? 0) + 1);
  const items = [...seen.entries()].sort((a, b) => a[0].localeCompare(b[0]));
  $("protocols").innerHTML = items.length
    ? items
        .map(([p, n]) => `<li><span class="line" style="background:${protocolColor(p)}"></span>${fmt.html(p)} <span class="muted">${n}</span></li>`)
        .join("")
    : '<li class="muted">none recognized yet</li>';
}

function renderSummary(graph) {
  const exact = graph.edges.filter((e) => e.exact).length;
  const range = isRange(graph);
  const total = graph.edges.reduce((sum, e) => sum + edgeBytes(e, range), 0);
  const st = state.status;
  const rows = [
    ["VMs", fmt.count(graph.nodes.length)],
    ["Dependencies", fmt.count(graph.edges.length)],
    ["Counted exactly", fmt.count(exact)],
    ["Sampled only", fmt.count(graph.edges.length - exact)],
    [range ? "Bytes in window" : "Bytes", fmt.bytes(total)],
    ["Switch sessions ready", st ? `${st.switches_ready} / ${st.switches}` : "–"],
    ["Servers connected", st ? `${st.servers_connected} / ${st.servers}` : "–"],
  ];
  $("summary").innerHTML = rows.map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join("");
}

// ---- Details --------------------------------------------------------------------------------

function row(label, value) {
  return `<dt>${label}</dt><dd>${value}</dd>`;
}

function measuredBy(name) {
  if (name.startsWith("server:")) return `server ${fmt.html(name.slice(7))} (same-server pair)`;
  return `switch <b>${fmt.html(name)}</b>`;
}

function showDetails(element) {
  const details = $("details");
  if (!element) {
    details.innerHTML = '<p class="hint">Hover or tap an edge or a VM.</p>';
    return;
  }
  if (element.isEdge()) {
    const e = element.data("edge");
    const parts = [`<h3>${fmt.html(e.src_vm)} → ${fmt.html(e.dst_vm)}</h3>`, '<dl class="kv">'];
    parts.push(row("Pair", `${fmt.html(e.pair.src)} → ${fmt.html(e.pair.dst)}`));
    if (e.in_range) {
      const how = e.in_range.exact ? "counted" : "estimated from samples";
      parts.push(row("In this window", `${fmt.count(e.in_range.packets)} packets, ${fmt.bytes(e.in_range.bytes)} (${how})`));
    }
    if (e.exact) {
      parts.push(row("Measured by", measuredBy(e.exact.measured_by)));
      parts.push(row("Packets", fmt.count(e.exact.packets)));
      parts.push(row("Bytes", `${fmt.count(e.exact.bytes)} (${fmt.bytes(e.exact.bytes)})`));
      if (e.exact.rate) parts.push(row("Rate", `${fmt.bits(e.exact.rate.bps)}, ${e.exact.rate.pps.toFixed(1)} pkt/s`));
      parts.push(row("Read at", fmt.clock(e.exact.at_ms)));
    } else {
      parts.push(row("Measured by", '<span class="muted">no counter: sampled only</span>'));
    }
    if (e.estimate) {
      const bound = e.estimate.error_percent == null ? "" : ` ± ${e.estimate.error_percent.toFixed(1)} %`;
      parts.push(
        row(
          "Sampled estimate",
          `${fmt.count(e.estimate.packets)} packets${bound}, ${fmt.bytes(e.estimate.bytes)} from ${fmt.count(e.estimate.samples)} sample${e.estimate.samples === 1 ? "" : "s"} (window ending ${fmt.clock(e.estimate.window_end_ms)})`,
        ),
      );
    }
    parts.push(row("Seen", `${fmt.clock(e.first_seen_ms)} – ${fmt.clock(e.last_seen_ms)}`));
    parts.push("</dl>");
    for (const label of e.labels) {
      const response = label.mean_response_ms == null ? "" : `, mean response ${label.mean_response_ms.toFixed(2)} ms`;
      parts.push(
        `<div class="label-card" style="--tag:${protocolColor(label.protocol)}"><b>${fmt.html(label.protocol)}</b> to port ${label.server_port}: ${fmt.count(label.requests)} requests, ${fmt.count(label.responses)} responses${response}` +
          (label.details.length ? `<ul>${label.details.map((d) => `<li>${fmt.html(d)}</li>`).join("")}</ul>` : "") +
          "</div>",
      );
    }
    details.innerHTML = parts.join("");
    return;
  }
  const vm = element.data("vm");
  const out = element.outgoers("edge");
  const into = element.incomers("edge");
  const sum = (edges) => edges.reduce((s, e) => s + e.data("bytes"), 0);
  details.innerHTML = [
    `<h3>${fmt.html(vm.name)}</h3><dl class="kv">`,
    row("Address", fmt.html(vm.ipv4)),
    row("Server", fmt.html(vm.server)),
    row("Talks to", `${out.length} VMs, ${fmt.bytes(sum(out))}`),
    row("Called by", `${into.length} VMs, ${fmt.bytes(sum(into))}`),
    "</dl>",
  ].join("");
}

// ---- Controls -------------------------------------------------------------------------------

$("slider").addEventListener("input", (e) => {
  const w = state.windows[Number(e.target.value)];
  if (!w) return;
  state.mode = "paused";
  state.window = w.index;
  renderSlider();
  renderStatus();
  pollNow();
});

$("live").addEventListener("click", () => {
  state.mode = "live";
  state.window = null;
  state.error = null;
  renderSlider();
  renderStatus();
  pollNow();
});

$("fit").addEventListener("click", () => map.fit());
$("relayout").addEventListener("click", () => map.layout());
$("filter").addEventListener("input", (e) => pairTable.setFilter(e.target.value));

const shownTabs = new Set(["map"]);
for (const tab of document.querySelectorAll("[data-tab]")) {
  tab.addEventListener("click", () => {
    const name = tab.dataset.tab;
    for (const other of document.querySelectorAll("[data-tab]")) {
      const selected = other === tab;
      other.setAttribute("aria-selected", String(selected));
      $(`tab-${other.dataset.tab}`).hidden = !selected;
    }
    // A graph laid out while hidden has no size: fit it when first shown.
    const view = name === "map" ? map : name === "topology" ? topologyView : null;
    if (view) {
      view.resize();
      if (!shownTabs.has(name)) view.fit();
    }
    shownTabs.add(name);
  });
}

renderStatus();
poll();
