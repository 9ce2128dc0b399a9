// The files a build stored on the master: each with its size, digest and step, linked for download.

function el(tag, className, ...children) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

/** A number of bytes as people say it (powers of 1000, as the reports say them). */
export function bytes(value) {
  if (value < 1000) return `${value} B`;
  let amount = value;
  for (const unit of ["KB", "MB", "GB", "TB"]) {
    amount /= 1000;
    if (amount < 1000 || unit === "TB") return `${amount.toFixed(1)} ${unit}`;
  }
  return "";
}

/** One file: its name linked to view it and a link to save it (unless it is gone), size, digest and step. */
function artifactRow(artifact) {
  const name = artifact.available
    ? Object.assign(el("a", "mono", artifact.path), { href: artifact.url })
    : el("span", "mono muted", artifact.path);
  const digest = el("span", "mono muted", artifact.sha256.slice(0, 12));
  digest.title = `SHA-256 ${artifact.sha256}`;
  const save = artifact.available
    ? Object.assign(el("a", "save", "download"), { href: `${artifact.url}?download=1`, title: `Download ${artifact.path}` })
    : null;
  const row = el("tr", "artifact",
    el("td", null, name, artifact.available ? null : el("span", "muted", " (replaced or removed since)")),
    el("td", null, save),
    el("td", "num", bytes(artifact.size)),
    el("td", null, digest),
    el("td", "muted", `step ${artifact.step + 1} ${artifact.step_name}`));
  row.dataset.path = artifact.path;
  return row;
}

/**
 * The Artifacts section of build `buildId`, hidden while it has none.
 * @returns {{el: HTMLElement, load: () => Promise<void>}}
 */
export function artifactsPanel(buildId, api, toast) {
  const body = el("tbody");
  const panel = el("section", "artifacts-panel", el("h2", null, "Artifacts"), el("table", "artifacts", body));
  panel.hidden = true;

  async function load() {
    try {
      const { data } = await api(`/api/builds/${encodeURIComponent(buildId)}/artifacts`);
      body.replaceChildren(...data.artifacts.map(artifactRow));
      panel.hidden = data.artifacts.length === 0;
    } catch (error) {
      toast(error.message, true);
    }
  }

  return { el: panel, load };
}
