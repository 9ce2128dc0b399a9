// History in the page: the grid of recent revisions by builder (Buildbot's console view), and
// search over every build's logs. Each view takes `ui`, the page's helpers (h, api, main, Stream...).

/** Rows of revisions, newest first; a column per builder; each cell the builds of that revision there. */
export function gridView(ui) {
  const { h, api, main } = ui;

  function cell(builds) {
    return h("td", { class: "grid-cell" }, (builds || []).map((b) => h("a", {
      class: `cell ${b.result ? `r-${b.result}` : "r-running"}`, href: ui.buildHref(b.id),
      title: `#${b.number} ${b.result || "running"}`, dataset: { build: b.id, result: b.result || "running" },
    }, `#${b.number}`)));
  }

  async function load() {
    const { data } = await api("/api/grid?revisions=30");
    if (!data.rows.length) {
      main.replaceChildren(h("h1", {}, "Grid"), h("p", { class: "muted" }, "No revision built yet."));
      return;
    }
    const head = h("tr", {}, h("th", {}, "Revision"), h("th", { class: "hide-narrow" }, "Change"),
      data.builders.map((name) => h("th", {}, h("a", { href: ui.builderHref(name) }, name))));
    const rows = data.rows.map((row) => {
      const change = row.change;
      const revision = change
        ? h("a", { href: `#/changes/${change.id}`, class: "mono", title: row.revision }, ui.short(row.revision))
        : h("span", { class: "mono", title: row.revision }, ui.short(row.revision));
      const said = change ? `${change.author}: ${(change.comments || "").split("\n")[0]}` : (row.branch || "");
      return h("tr", { dataset: { revision: row.revision } }, h("td", {}, revision),
        h("td", { class: "hide-narrow muted" }, said), data.builders.map((name) => cell(row.builds[name])));
    });
    main.replaceChildren(h("h1", {}, "Grid"),
      h("p", { class: "muted" }, "Recent revisions, newest first, and their builds on each builder."),
      h("div", { class: "scroll" }, h("table", { class: "grid-table" }, h("thead", {}, head), h("tbody", {}, rows))));
  }

  return new ui.Stream({ types: "build.started,build.finished" }, load, ui.debounced(load));
}

/** Where a found line is: its build's page with the step's log open at that line. */
export function lineHref(buildId, step, line, log = "stdio") {
  const which = log === "stdio" ? "" : `?log=${encodeURIComponent(log)}`;
  return `#/builds/${encodeURIComponent(buildId)}/steps/${step}/line/${line}${which}`;
}

/** A search box over every build's logs; the query is in the URL (#/search?q=...). */
export function searchView(ui, query) {
  const { h, api, main } = ui;
  const input = h("input", { type: "search", name: "q", placeholder: "text in any build's log", "aria-label": "Search the logs" });
  input.value = query;
  const results = h("div", { class: "search-results" });
  const form = h("form", { class: "search", role: "search" }, input, h("button", { class: "primary", type: "submit" }, "Search"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    location.hash = `#/search?q=${encodeURIComponent(input.value.trim())}`;
  });
  main.replaceChildren(h("h1", {}, "Search the logs"), form, results);
  input.focus();

  function marked(text) {
    const at = text.toLowerCase().indexOf(query.toLowerCase());
    if (at < 0) return [text];
    return [text.slice(0, at), h("mark", {}, text.slice(at, at + query.length)), text.slice(at + query.length)];
  }

  async function search() {
    if (!query) return;
    results.replaceChildren(h("p", { class: "muted" }, "Searching…"));
    try {
      const { data } = await api(`/api/search?q=${encodeURIComponent(query)}&limit=500`);
      if (!data.lines.length) {
        results.replaceChildren(h("p", { class: "muted" }, `No log line holds “${query}”.`));
        return;
      }
      const groups = new Map();
      for (const line of data.lines) {
        const key = `${line.build_id}/${line.step}/${line.log}`;
        if (!groups.has(key)) groups.set(key, []);
        groups.get(key).push(line);
      }
      const count = `${data.lines.length}${data.limited ? "+" : ""} line${data.lines.length === 1 ? "" : "s"}`;
      results.replaceChildren(h("p", { class: "muted" }, `${count} in ${groups.size} log${groups.size === 1 ? "" : "s"}`),
        ...[...groups.values()].map((lines) => {
          const first = lines[0];
          return h("section", { class: "card hit", dataset: { build: first.build_id } },
            h("div", { class: "hit-head" },
              h("a", { href: ui.buildHref(first.build_id) }, `${first.builder} #${first.number}`),
              h("span", { class: "muted" }, `step ${first.step + 1} ${first.step_name}${first.log === "stdio" ? "" : ` (${first.log})`}`),
              ui.timeText("ago", first.started_at)),
            h("ol", { class: "hit-lines mono" }, lines.map((line) => h("li", {},
              h("a", { href: lineHref(line.build_id, line.step, line.line, line.log), class: "line-no" }, String(line.line)),
              h("span", { class: line.stream === "stderr" ? "e" : line.stream === "header" ? "h" : "" }, marked(line.text))))));
        }));
    } catch (error) {
      results.replaceChildren(h("p", { class: "muted" }, `The search failed: ${error.message}`));
    }
  }

  search();
  return { close() {} };
}
