// A build's test results: failures first, each with its message, then the rest, filterable by outcome.

import { plain, render } from "./ansi.js";

const OUTCOMES = ["failed", "error", "skipped", "passed"];

function el(tag, className, ...children) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function seconds(value) {
  if (value === null || value === undefined) return "";
  return value < 1 ? `${Math.round(value * 1000)} ms` : `${value.toFixed(value < 10 ? 2 : 1)} s`;
}

function testName(test) {
  return [test.classname, test.name].filter(Boolean).join(".") || test.name;
}

/** One test: its outcome, name, step, time and place; a failure's message below it. */
function testItem(test) {
  const where = test.file ? `${test.file}${test.line ? `:${test.line}` : ""}` : "";
  const head = el("div", "test-head",
    el("span", `outcome o-${test.outcome}`, test.outcome),
    el("span", "test-name mono", testName(test)),
    el("span", "muted", `step ${test.step + 1} ${test.step_name}`),
    where ? el("span", "mono muted", where) : null,
    el("span", "muted", seconds(test.duration)));
  const item = el("li", `test t-${test.outcome}`, head);
  item.dataset.outcome = test.outcome;
  if (test.message) item.append(el("pre", "message", ...render(test.message, plain())));
  return item;
}

/**
 * The Tests panel of build `buildId`: fetched when first shown.
 * @returns {{el: HTMLElement, load: () => Promise<void>}}
 */
export function testsPanel(buildId, api, toast) {
  const list = el("ul", "tests");
  const filters = el("div", "test-filters");
  const panel = el("div", "tests-panel", filters, list);
  let tests = [];
  let shown = null; // the outcome shown, or null for all

  function draw() {
    list.replaceChildren(...tests.filter((t) => shown === null || t.outcome === shown).map(testItem));
    for (const button of filters.children) button.setAttribute("aria-pressed", String(button.dataset.outcome === String(shown)));
  }

  async function load() {
    try {
      const { data } = await api(`/api/builds/${encodeURIComponent(buildId)}/tests?limit=10000`);
      tests = data.tests;
      const total = Object.values(data.counts).reduce((a, b) => a + b, 0);
      const choices = [[null, `All ${total}`], ...OUTCOMES.filter((o) => data.counts[o]).map((o) => [o, `${data.counts[o]} ${o}`])];
      filters.replaceChildren(...choices.map(([outcome, text]) => {
        const button = el("button", "filter", text);
        button.type = "button";
        button.dataset.outcome = String(outcome);
        button.addEventListener("click", () => { shown = outcome; draw(); });
        return button;
      }));
      if (tests.length < total) {
        filters.append(el("span", "muted", `showing the first ${tests.length.toLocaleString("en")}`));
      }
      draw();
    } catch (error) {
      toast(error.message, true);
    }
  }

  return { el: panel, load };
}
