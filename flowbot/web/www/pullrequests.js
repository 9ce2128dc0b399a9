// Pull requests in the page: the open ones (or all), each with the newest build of every builder
// that built it. The view takes `ui`, the page's helpers (h, api, main, Stream...).

/** "#2 Title", a link to the pull request's page when it has one. */
export function pullRequestLink(ui, pr) {
  return ui.safeLink(pr.url, `#${pr.number} ${pr.title}`);
}

/** The pull requests, open ones unless `all`; a new build or change redraws them. */
export function pullRequestsView(ui, all = false) {
  const { h, api, main } = ui;

  async function load() {
    const { data } = await api(`/api/pullrequests?state=${all ? "all" : "open"}&limit=200`);
    const rows = data.pullrequests.map((pr) => h("tr", { dataset: { pullRequest: pr.id }, class: pr.state },
      h("td", {}, pullRequestLink(ui, pr)),
      h("td", { class: "hide-narrow" }, pr.repository),
      h("td", {}, pr.author),
      h("td", { class: "mono" }, `${pr.head_branch} → ${pr.base_branch}`),
      h("td", {}, pr.state === "open" ? ui.timeText("ago", pr.updated_at) : "closed"),
      h("td", {}, ui.buildCells(pr.builds))));
    const other = all
      ? h("a", { href: "#/pullrequests" }, "Open ones only")
      : h("a", { href: "#/pullrequests?state=all" }, "Closed ones too");
    main.replaceChildren(h("h1", {}, "Pull requests"), h("p", { class: "muted" }, other), rows.length
      ? h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {},
        ["Pull request", "Repository", "Author", "Branches", "Changed", "Newest builds"].map((t, i) =>
          h("th", { class: i === 1 ? "hide-narrow" : null }, t)))), h("tbody", {}, rows)))
      : h("p", { class: "muted" }, all ? "No pull request was built yet." : "No open pull request was built yet."));
  }

  return new ui.Stream({ types: "change.new,build.started,build.finished" }, load, ui.debounced(load));
}
