// The topology: switches (colored and labeled by their counting-table load), the links between
// them, and the servers on their uplinks. Laid out as a tree from the switches farthest from
// any server (the core) down to the servers, once per topology.

import cytoscape from "cytoscape";
import { loadColor } from "./colors.js";
import { count } from "./format.js";

const STYLE = [
  {
    selector: "node.switch",
    style: {
      shape: "round-rectangle",
      width: 96,
      height: 40,
      "background-color": "#22252b",
      "border-width": 3,
      "border-color": "data(color)",
      label: "data(label)",
      "text-wrap": "wrap",
      "text-valign": "center",
      color: "#d8d9da",
      "font-size": 10,
    },
  },
  { selector: "node.switch.down", style: { "border-style": "dashed", "background-color": "#3a1c20" } },
  {
    selector: "node.server",
    style: {
      shape: "rectangle",
      width: 78,
      height: 30,
      "background-color": "#2c3340",
      "border-width": 1,
      "border-color": "#4a4f59",
      label: "data(label)",
      "text-wrap": "wrap",
      "text-valign": "center",
      color: "#9fa7b3",
      "font-size": 9,
    },
  },
  { selector: "node.server.offline", style: { "border-style": "dashed", color: "#6e7580" } },
  {
    selector: "edge",
    style: {
      width: 2,
      "line-color": "#4a4f59",
      "curve-style": "straight",
      label: "data(label)",
      "font-size": 8,
      color: "#6e7580",
      "text-rotation": "autorotate",
      "text-background-color": "#111217",
      "text-background-opacity": 1,
    },
  },
];

/// Switches by how many links they are from the nearest server's uplink switch.
function depths(topology) {
  const neighbours = new Map(topology.switches.map((s) => [s.name, []]));
  for (const l of topology.links) {
    neighbours.get(l.a.switch)?.push(l.b.switch);
    neighbours.get(l.b.switch)?.push(l.a.switch);
  }
  const depth = new Map();
  let frontier = [...new Set(topology.servers.map((s) => s.uplink.switch))];
  frontier.forEach((s) => depth.set(s, 0));
  while (frontier.length) {
    const next = [];
    for (const s of frontier) {
      for (const n of neighbours.get(s) ?? []) {
        if (!depth.has(n)) {
          depth.set(n, depth.get(s) + 1);
          next.push(n);
        }
      }
    }
    frontier = next;
  }
  return depth;
}

export class TopologyView {
  constructor(container) {
    this.cy = cytoscape({
      container,
      style: STYLE,
      minZoom: 0.2,
      maxZoom: 3,
      boxSelectionEnabled: false,
      autoungrabify: false,
    });
    this.key = "";
  }

  /// Shows an /api/topology answer.
  update(topology) {
    const cy = this.cy;
    const key = JSON.stringify([topology.switches.map((s) => s.name), topology.links, topology.servers.map((s) => s.name)]);
    if (key !== this.key) {
      this.key = key;
      cy.elements().remove();
      cy.add(topology.switches.map((s) => ({ group: "nodes", data: { id: `sw:${s.name}` }, classes: "switch" })));
      cy.add(topology.servers.map((s) => ({ group: "nodes", data: { id: `srv:${s.name}` }, classes: "server" })));
      cy.add(
        topology.links.map((l) => ({
          group: "edges",
          data: {
            id: `link:${l.a.switch}:${l.a.port}`,
            source: `sw:${l.a.switch}`,
            target: `sw:${l.b.switch}`,
            label: `${l.a.port}–${l.b.port}`,
          },
        })),
      );
      cy.add(
        topology.servers.map((s) => ({
          group: "edges",
          data: { id: `uplink:${s.name}`, source: `sw:${s.uplink.switch}`, target: `srv:${s.name}`, label: `${s.uplink.port}` },
        })),
      );
      this.depth = depths(topology);
      this.layout();
    }
    cy.batch(() => {
      for (const s of topology.switches) {
        const node = cy.getElementById(`sw:${s.name}`);
        node.data({
          label: `${s.name}\n${count(s.entries)} / ${count(s.capacity)} (${(s.load * 100).toFixed(1)} %)`,
          color: loadColor(s.load),
          report: s,
        });
        node.toggleClass("down", !s.ready);
      }
      for (const s of topology.servers) {
        const node = cy.getElementById(`srv:${s.name}`);
        node.data({ label: `${s.name}\n${s.vms.length} VMs`, server: s });
        node.toggleClass("offline", !s.connected);
      }
    });
  }

  /// Lays the tree out, now if the view is shown, else when it is.
  layout() {
    if (this.cy.width() === 0) {
      this.pendingLayout = true;
      return;
    }
    this.pendingLayout = false;
    const deepest = Math.max(0, ...this.depth.values());
    const roots = this.cy.nodes(".switch").filter((n) => (this.depth.get(n.id().slice(3)) ?? deepest) === deepest);
    this.cy
      .layout({ name: "breadthfirst", directed: false, roots, spacingFactor: 1.1, padding: 24, animate: false })
      .run();
  }

  /// The container was shown or resized.
  resize() {
    this.cy.resize();
    if (this.pendingLayout) this.layout();
  }

  fit() {
    this.cy.fit(undefined, 24);
  }
}
