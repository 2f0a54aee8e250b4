// Number and time formatting shared by the views.

const BYTE_UNITS = ["B", "kB", "MB", "GB", "TB", "PB"];
const BIT_UNITS = ["bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s"];

function scaled(value, units) {
  let v = value;
  let i = 0;
  while (Math.abs(v) >= 1000 && i < units.length - 1) {
    v /= 1000;
    i += 1;
  }
  const digits = i === 0 || v >= 100 ? 0 : v >= 10 ? 1 : 2;
  return `${v.toFixed(digits)} ${units[i]}`;
}

export function bytes(value) {
  return value == null ? "–" : scaled(value, BYTE_UNITS);
}

export function bits(value) {
  return value == null ? "–" : scaled(value, BIT_UNITS);
}

const INTEGER = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

export function count(value) {
  return value == null ? "–" : INTEGER.format(value);
}

export function percent(value) {
  return value == null ? "–" : `${value.toFixed(1)} %`;
}

function pad(n) {
  return String(n).padStart(2, "0");
}

/// Local wall-clock time of a Unix millisecond, HH:MM:SS.
export function clock(ms) {
  if (ms == null || ms === 0) return "–";
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/// "12 s ago" style age of a Unix millisecond, against `now`.
export function age(ms, now) {
  if (ms == null || ms === 0) return "never";
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  return `${Math.floor(s / 3600)} h ago`;
}

/// Escapes text for HTML.
export function html(text) {
  return String(text)
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;");
}
