// Colors of the protocols DPI reports, stable from one update to the next.

const KNOWN = {
  http: "#5794f2",
  tls: "#b877d9",
  dns: "#fade2a",
  postgresql: "#73bf69",
  mysql: "#ff9830",
  redis: "#f2495c",
  ntp: "#8ab8ff",
};
const OTHERS = ["#37872d", "#c4162a", "#1f60c4", "#8f3bb8", "#fa6400", "#e0b400", "#56a64b", "#3274d9"];
export const UNLABELED = "#8e8e8e";

export function protocolColor(protocol) {
  if (!protocol) return UNLABELED;
  const known = KNOWN[protocol.toLowerCase()];
  if (known) return known;
  let hash = 0;
  for (const c of protocol) hash = (hash * 31 + c.charCodeAt(0)) >>> 0;
  return OTHERS[hash % OTHERS.length];
}

/// Switch load (0..1) from calm to alarming.
export function loadColor(load) {
  if (load >= 0.9) return "#f2495c";
  if (load >= 0.7) return "#ff9830";
  if (load >= 0.4) return "#fade2a";
  return "#73bf69";
}
