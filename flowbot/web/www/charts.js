// Small charts of a builder's recent builds, drawn as SVG by the page itself (no library, nothing
// fetched): their results in a row, their durations as bars, and the failure rate over a sliding
// window. Builds are given oldest first; colours come from the stylesheet (classes r-RESULT).

const SVG = "http://www.w3.org/2000/svg";
const HEIGHT = 64;
const STEP = 12; // pixels per build

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  node.append(...children);
  return node;
}

function titled(node, text) {
  node.append(svg("title", {}, text));
  return node;
}

function frame(label, width, ...children) {
  return svg("svg", {
    class: "chart", role: "img", "aria-label": label, width, height: HEIGHT + 14, viewBox: `0 0 ${width} ${HEIGHT + 14}`,
  }, ...children);
}

const failed = (b) => b.result && !["SUCCESS", "WARNINGS", "SKIPPED"].includes(b.result);
const took = (b) => (b.finished_at && b.started_at ? b.finished_at - b.started_at : null);
const name = (b) => `#${b.number} ${b.result || "running"}`;

function seconds(value) {
  if (value < 1) return `${Math.round(value * 1000)} ms`;
  if (value < 120) return `${value.toFixed(value < 10 ? 1 : 0)} s`;
  return `${(value / 60).toFixed(1)} min`;
}

/** One cell per build, coloured by its result. */
export function resultStrip(builds) {
  const width = Math.max(builds.length * STEP, 60);
  return frame(`results of the last ${builds.length} builds`, width,
    ...builds.map((b, i) => titled(svg("rect", {
      class: `r-${b.result || "running"}`, x: i * STEP + 1, y: HEIGHT / 2 - 8, width: STEP - 2, height: 16, rx: 2,
    }), name(b))),
    svg("text", { x: 0, y: HEIGHT + 12, class: "axis" }, "results, oldest to newest"));
}

/** One bar per finished build, as tall as it took, coloured by its result. */
export function durationBars(builds) {
  const times = builds.map(took);
  const longest = Math.max(...times.filter((t) => t !== null), 0.001);
  const width = Math.max(builds.length * STEP, 60);
  return frame(`durations of the last ${builds.length} builds, the longest ${seconds(longest)}`, width,
    ...builds.map((b, i) => {
      const t = times[i];
      const height = t === null ? 0 : Math.max(1, (t / longest) * (HEIGHT - 4));
      return titled(svg("rect", {
        class: `r-${b.result || "running"}`, x: i * STEP + 1, y: HEIGHT - height, width: STEP - 2, height,
      }), `${name(b)}: ${t === null ? "running" : seconds(t)}`);
    }),
    svg("text", { x: 0, y: HEIGHT + 12, class: "axis" }, `durations, longest ${seconds(longest)}`));
}

/** The share of failed builds among the `window` builds up to each one, as a line from 0 to 100 %. */
export function failureRate(builds, window = 10) {
  const finished = builds.filter((b) => b.result);
  const width = Math.max(finished.length * STEP, 60);
  const rates = finished.map((_, i) => {
    const recent = finished.slice(Math.max(0, i - window + 1), i + 1);
    return recent.filter(failed).length / recent.length;
  });
  const y = (rate) => HEIGHT - 2 - rate * (HEIGHT - 4);
  const points = rates.map((rate, i) => `${i * STEP + STEP / 2},${y(rate)}`).join(" ");
  const last = rates.length ? Math.round(rates[rates.length - 1] * 100) : 0;
  return frame(`failure rate over the last ${window} builds: ${last} %`, width,
    svg("line", { class: "grid-line", x1: 0, x2: width, y1: y(0), y2: y(0) }),
    svg("line", { class: "grid-line", x1: 0, x2: width, y1: y(1), y2: y(1) }),
    svg("polyline", { class: "rate", points, fill: "none" }),
    ...rates.map((rate, i) => titled(svg("circle", { class: "rate-point", cx: i * STEP + STEP / 2, cy: y(rate), r: 2.5 }),
      `${name(finished[i])}: ${Math.round(rate * 100)} % of the last ${Math.min(i + 1, window)} failed`)),
    svg("text", { x: 0, y: HEIGHT + 12, class: "axis" }, `failure rate, last ${window}: ${last} %`));
}
