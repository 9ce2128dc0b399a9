// A matrix in the page: its cells as a grid of results, each linked to its build.
//
// Rows are the combinations of every axis but the last, columns the last axis's values; a cell the
// matrix leaves out (an exclude) is blank. The view follows the builder's builds and reloads the
// matrix (one API call) when one of them starts or ends.

/** The combinations of ``axes`` (a list of [name, values]), the first varying slowest. */
function product(axes) {
  return axes.reduce((rows, [name, values]) => rows.flatMap((row) => values.map((v) => ({ ...row, [name]: v }))), [{}]);
}

const key = (values, names) => JSON.stringify(names.map((n) => values[n]));

/** ``#/matrices/ID``: the matrix's result, counts and grid. */
export function matrixView(ui, id) {
  const { h, api, main } = ui;
  let builder = null;

  function cellLink(cell) {
    const state = cell.result || (cell.build_id ? "running" : "pending");
    const text = cell.result || (cell.build_id ? "running" : "pending");
    const title = Object.entries(cell.values).map(([n, v]) => `${n}=${v}`).join(", ");
    const props = { class: `cell r-${state}`, title, dataset: { request: cell.request_id, result: state } };
    return cell.build_id ? h("a", { ...props, href: ui.buildHref(cell.build_id) }, `#${cell.number} ${text}`)
      : h("span", props, text);
  }

  async function load() {
    const { data: matrix } = await api(`/api/matrices/${encodeURIComponent(id)}`);
    builder = matrix.builder;
    const axes = Object.entries(matrix.axes);
    const [columnName, columnValues] = axes[axes.length - 1];
    const rowAxes = axes.slice(0, -1);
    const names = axes.map(([name]) => name);
    const cells = new Map(matrix.cells.map((cell) => [key(cell.values, names), cell]));
    const head = h("tr", {}, rowAxes.map(([name]) => h("th", {}, name)),
      columnValues.map((v) => h("th", { class: "axis-value" }, `${columnName}=${v}`)));
    const rows = product(rowAxes).map((row) => h("tr", {},
      rowAxes.map(([name]) => h("th", { scope: "row" }, String(row[name]))),
      columnValues.map((v) => {
        const cell = cells.get(key({ ...row, [columnName]: v }, names));
        return h("td", { class: "matrix-cell" }, cell ? cellLink(cell) : "");
      })));
    const counts = Object.entries(matrix.counts).map(([result, n]) => `${n} ${result.toLowerCase()}`).join(", ");
    main.replaceChildren(
      h("h1", {}, h("a", { href: ui.builderHref(matrix.builder) }, matrix.builder), `matrix ${matrix.id}`,
        h("span", { id: "matrix-result" }, h("span", {
          class: `result r-${matrix.result || "running"}`, dataset: { result: matrix.result || "running" },
        }, matrix.result || "running"))),
      h("p", { class: "muted" }, `${matrix.size} cell${matrix.size === 1 ? "" : "s"}: ${counts}`,
        matrix.fail_fast ? " · fail fast" : "", " · ", ui.timeText("ago", matrix.submitted_at)),
      h("div", { class: "scroll" }, h("table", { class: "matrix-table" }, h("thead", {}, head), h("tbody", {}, rows))));
  }

  const reload = ui.debounced(load, 300);
  return new ui.Stream({ types: "build.started,build.finished,request.cancelled" }, load, (event) => {
    if (event.build ? event.build.builder === builder : event.builder === builder) reload();
  });
}

/** The newest matrices of a builder, as links with their results, for its page. */
export async function matricesList(ui, builder) {
  const { h, api } = ui;
  const { data } = await api(`/api/matrices?builder=${encodeURIComponent(builder)}&limit=10`);
  if (!data.matrices.length) return null;
  return h("ul", { class: "plain matrices" }, data.matrices.map((m) => h("li", {},
    h("a", { href: `#/matrices/${m.id}`, dataset: { matrix: m.id } }, `matrix ${m.id}`), " ",
    h("span", { class: `result r-${m.result || "running"}` }, m.result || "running"),
    h("span", { class: "muted" }, ` ${m.size} cells · `, ui.timeText("ago", m.submitted_at)))));
}
