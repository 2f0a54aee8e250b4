// A table whose rows are plain objects, sorted by clicking a column header (again to reverse):
// numbers sort as numbers, text as text, missing values last either way.

export class SortableTable {
  /// `render(row)` gives the cells' HTML for one row, in the header's column order.
  constructor(table, { render, key, descending = false, rowId }) {
    this.table = table;
    this.body = table.tBodies[0];
    this.render = render;
    this.rowId = rowId;
    this.rows = [];
    this.filter = "";
    this.headers = [...table.tHead.rows[0].cells];
    this.sort = { key, descending };
    for (const th of this.headers) {
      th.tabIndex = 0;
      th.classList.add("sortable");
      const choose = () => this.sortBy(th.dataset.key);
      th.addEventListener("click", choose);
      th.addEventListener("keydown", (e) => {
        if (e.key === "Enter" || e.key === " ") {
          e.preventDefault();
          choose();
        }
      });
    }
  }

  sortBy(key) {
    const descending = this.sort.key === key ? !this.sort.descending : this.type(key) === "number";
    this.sort = { key, descending };
    this.draw();
  }

  type(key) {
    return this.headers.find((th) => th.dataset.key === key)?.dataset.type ?? "text";
  }

  setRows(rows) {
    this.rows = rows;
    this.draw();
  }

  setFilter(text) {
    this.filter = text.trim().toLowerCase();
    this.draw();
  }

  compare(a, b) {
    const { key, descending } = this.sort;
    const x = a[key];
    const y = b[key];
    const missing = (v) => v == null || v === "";
    if (missing(x) || missing(y)) return missing(x) - missing(y);
    let order;
    if (this.type(key) === "number") order = x - y;
    else order = String(x).localeCompare(String(y), "en", { numeric: true });
    return descending ? -order : order;
  }

  draw() {
    for (const th of this.headers) {
      const sorted = th.dataset.key === this.sort.key;
      th.setAttribute("aria-sort", sorted ? (this.sort.descending ? "descending" : "ascending") : "none");
    }
    const shown = this.rows.filter(
      (row) => !this.filter || Object.values(row).some((v) => String(v ?? "").toLowerCase().includes(this.filter)),
    );
    shown.sort((a, b) => this.compare(a, b));
    const html = shown
      .map((row) => `<tr data-id="${this.rowId(row)}">${this.render(row).map((c) => `<td>${c}</td>`).join("")}</tr>`)
      .join("");
    if (shown.length === 0) {
      const text = this.rows.length ? "No row matches the filter." : "Nothing to show yet.";
      this.body.innerHTML = `<tr class="none"><td colspan="${this.headers.length}">${text}</td></tr>`;
    } else {
      this.body.innerHTML = html;
    }
  }
}
