// The dependency map: VMs grouped in their servers (cytoscape compound nodes), one directed
// edge per communicating pair, its width by bytes and its label the protocols DPI recognized.
// Nodes keep their positions across updates: the layout runs when the VMs change, when the
// first edges appear, or when asked, never on an ordinary update.

import cytoscape from "cytoscape";
import fcose from "cytoscape-fcose";
import { protocolColor, UNLABELED } from "./colors.js";

cytoscape.use(fcose);

export function edgeId(edge) {
  return `${edge.src_vm}->${edge.dst_vm}`;
}

/// The protocols of an edge's labels, in order, once each.
export function protocols(edge) {
  return [...new Set(edge.labels.map((l) => l.protocol))];
}

/// An answer for a range of time (a window): its edges carry their traffic in that range.
export function isRange(graph) {
  return graph.to_ms != null;
}

/// The bytes an edge stands for. The whole graph: exact bytes when a counter measured the
/// pair, else the sampled estimate's. A range: the bytes counted (or estimated) in it; none
/// when the pair was only seen through labels there.
export function edgeBytes(edge, range) {
  if (range) return edge.in_range?.bytes ?? 0;
  return edge.exact?.bytes ?? edge.estimate?.bytes ?? 0;
}

const STYLE = [
  {
    selector: "node.server",
    style: {
      shape: "round-rectangle",
      "background-color": "#22252b",
      "background-opacity": 1,
      "border-color": "#4a4f59",
      "border-width": 1,
      label: "data(label)",
      color: "#9fa7b3",
      "font-size": 12,
      "font-weight": 600,
      "text-valign": "top",
      "text-halign": "center",
      "text-margin-y": -4,
      padding: 14,
    },
  },
  {
    selector: "node.vm",
    style: {
      shape: "ellipse",
      width: 26,
      height: 26,
      "background-color": "#3d71d9",
      "border-color": "#8ab8ff",
      "border-width": 1.5,
      label: "data(label)",
      color: "#d8d9da",
      "font-size": 11,
      "text-valign": "bottom",
      "text-margin-y": 4,
      "text-wrap": "wrap",
    },
  },
  {
    selector: "edge",
    style: {
      width: "data(width)",
      "line-color": "data(color)",
      "target-arrow-color": "data(color)",
      "target-arrow-shape": "triangle",
      "arrow-scale": 0.9,
      "curve-style": "bezier",
      "control-point-step-size": 30,
      label: "data(label)",
      "font-size": 10,
      "min-zoomed-font-size": 7,
      color: "#d8d9da",
      "text-background-color": "#111217",
      "text-background-opacity": 0.85,
      "text-background-padding": 2,
      "text-rotation": "autorotate",
      opacity: 0.85,
    },
  },
  { selector: "edge.sampled", style: { "line-style": "dashed", "line-dash-pattern": [6, 4] } },
  {
    selector: "edge.hover, edge:selected",
    style: { opacity: 1, "underlay-color": "#ffffff", "underlay-opacity": 0.15, "underlay-padding": 4, "z-index": 10 },
  },
  { selector: "node.vm.hover, node.vm:selected", style: { "border-color": "#ffffff", "border-width": 3 } },
  { selector: ".faded", style: { opacity: 0.15 } },
];

export class DependencyMap {
  constructor(container, { onFocus }) {
    this.cy = cytoscape({
      container,
      style: STYLE,
      minZoom: 0.2,
      maxZoom: 4,
      boxSelectionEnabled: false,
    });
    this.nodeKey = "";
    this.laidOutWithEdges = false;
    this.onFocus = onFocus;
    this.pinned = null;
    this.cy.on("mouseover", "edge, node.vm", (e) => {
      e.target.addClass("hover");
      if (!this.pinned) this.onFocus(e.target);
    });
    this.cy.on("mouseout", "edge, node.vm", (e) => {
      e.target.removeClass("hover");
      if (!this.pinned) this.onFocus(null);
    });
    this.cy.on("tap", "edge, node.vm", (e) => {
      this.pinned = e.target.id();
      this.highlight(e.target);
      this.onFocus(e.target);
    });
    this.cy.on("tap", (e) => {
      if (e.target === this.cy) {
        this.pinned = null;
        this.highlight(null);
        this.onFocus(null);
      }
    });
  }

  /// The element whose details are pinned by a tap, if it still exists.
  pinnedElement() {
    if (!this.pinned) return null;
    const el = this.cy.getElementById(this.pinned);
    return el.nonempty() ? el : null;
  }

  highlight(target) {
    this.cy.elements().removeClass("faded");
    if (!target) return;
    const keep = target.isEdge() ? target.union(target.connectedNodes()) : target.closedNeighborhood();
    const parents = keep.nodes().parents();
    this.cy.elements().not(keep.union(parents)).addClass("faded");
  }

  /// Shows `graph` (an /api/graph answer); returns the edges' ids.
  update(graph) {
    const cy = this.cy;
    const servers = [...new Set(graph.nodes.map((n) => n.server))].sort();
    const nodeKey = graph.nodes.map((n) => `${n.server}/${n.name}`).join(",");
    const range = isRange(graph);
    const bytesOf = (edge) => edgeBytes(edge, range);
    const maxBytes = Math.max(1, ...graph.edges.map(bytesOf));
    let relayout = false;
    cy.batch(() => {
      if (nodeKey !== this.nodeKey) {
        cy.elements().remove();
        cy.add(servers.map((s) => ({ group: "nodes", data: { id: `srv:${s}`, label: s }, classes: "server" })));
        cy.add(
          graph.nodes.map((n) => ({
            group: "nodes",
            data: { id: `vm:${n.name}`, parent: `srv:${n.server}`, label: n.name, vm: n },
            classes: "vm",
          })),
        );
        this.nodeKey = nodeKey;
        this.laidOutWithEdges = false;
        this.arranged = false;
        relayout = true;
      }
      const wanted = new Set(graph.edges.map(edgeId));
      cy.edges().filter((e) => !wanted.has(e.id())).remove();
      for (const edge of graph.edges) {
        const protos = protocols(edge);
        const data = {
          id: edgeId(edge),
          source: `vm:${edge.src_vm}`,
          target: `vm:${edge.dst_vm}`,
          label: protos.join(", "),
          color: protos.length ? protocolColor(protos[0]) : UNLABELED,
          bytes: bytesOf(edge),
          // Logarithmic: pairs span several orders of magnitude.
          width: 1.5 + 7 * (Math.log1p(bytesOf(edge)) / Math.log1p(maxBytes)),
          edge,
        };
        const existing = cy.getElementById(data.id);
        if (existing.nonempty()) existing.data(data);
        else cy.add({ group: "edges", data });
        cy.getElementById(data.id).toggleClass("sampled", !edge.exact);
      }
    });
    if (graph.edges.length > 0 && !this.laidOutWithEdges) {
      this.laidOutWithEdges = true;
      relayout = true;
    }
    if (relayout) this.layout();
    const pinned = this.pinnedElement();
    if (this.pinned && !pinned) {
      this.pinned = null;
      this.highlight(null);
    }
    return pinned;
  }

  /// Arranges the VMs, now if the map is shown, else when it is.
  layout() {
    if (this.cy.width() === 0) {
      this.pendingLayout = true;
      return;
    }
    this.pendingLayout = false;
    this.cy
      .layout({
        // fcose keeps each server's VMs together and the servers apart; from the second run
        // on it starts from the current places, so asking again refines rather than reshuffles.
        name: "fcose",
        quality: "proof",
        randomize: !this.arranged,
        animate: false,
        nodeDimensionsIncludeLabels: true,
        idealEdgeLength: () => 110,
        nodeRepulsion: () => 12000,
        nodeSeparation: 90,
        nestingFactor: 0.5,
        gravity: 0.2,
        gravityCompound: 1.5,
        tile: true,
        padding: 30,
      })
      .run();
    this.arranged = true;
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
