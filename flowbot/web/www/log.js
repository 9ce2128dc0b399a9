// One log of a step, as people read it: any part of it a page at a time, live at its end.
//
// The view holds a window of the log's lines (at most MAX_LINES) and fetches more as it is
// scrolled past either end; Start, End and First error jump; the line count says how long the
// log is, and Raw downloads it whole. Lines keep their numbers (from 1, as shown), so live lines
// from the event stream join the stored ones without a gap or a repeat.

import { plain, render } from "./ansi.js";

const PAGE = 1000; // lines fetched at a time
const TAIL = 500; // lines shown at first
const MAX_LINES = 5000; // lines kept on the page at once
const CONTEXT = 20; // lines shown above the first error

export class LogView {
  /**
   * @param {object} options buildId, step (its number in the API, from 0), name (the log's name),
   *   label (for the download's file name), api (the page's API call), toast (to report errors).
   */
  constructor({ buildId, step, name = "stdio", label = "log", api, toast }) {
    Object.assign(this, { buildId, step, name, api, toast });
    this.lo = 0; // the first line shown
    this.hi = 0; // one past the last line shown
    this.total = 0; // lines the log has, as far as the page knows
    this.following = true; // showing the end, and adding live lines there
    this.pending = null; // live lines that came while a fetch was under way
    this.busy = null;
    this.state = plain();
    const path = `/api/builds/${encodeURIComponent(buildId)}/steps/${step}`;
    this.linesPath = `${path}/lines?log=${encodeURIComponent(name)}`;
    this.count = el("span", "count", "");
    const raw = el("a", "raw button", "Raw");
    raw.href = `${path}/log?name=${encodeURIComponent(name)}`;
    raw.download = `${label}.log`.replace(/[^\w.-]+/g, "-");
    raw.title = "the whole log as text";
    this.bar = el("div", "log-bar", this.count,
      button("Start", "the log's first lines", () => this.jump(0)),
      button("End", "the log's last lines", () => this.jump(null)),
      button("First error", "the first line that reads as an error", () => this.firstError()),
      raw);
    this.earlier = button("", "fetch earlier lines", () => this.more(-1), "more earlier");
    this.later = button("", "fetch later lines", () => this.more(1), "more later");
    this.pre = el("pre", "log");
    this.pre.tabIndex = 0;
    this.pre.setAttribute("aria-label", `log ${name} of step ${step + 1}`);
    this.lines = el("div", "lines");
    this.pre.append(this.earlier, this.lines, this.later);
    this.el = el("div", "logview", this.bar, this.pre);
    // Scrolled near either end: the next lines are fetched (the buttons are there for keyboards too).
    this.observer = new IntersectionObserver((entries) => {
      for (const entry of entries) {
        if (entry.isIntersecting && !entry.target.hidden) this.more(entry.target === this.earlier ? -1 : 1);
      }
    }, { root: this.pre, rootMargin: "200px 0px" });
    this.observer.observe(this.earlier);
    this.observer.observe(this.later);
  }

  /** Show the log's tail and follow it. */
  open() {
    return this.run(async () => {
      const page = await this.fetch({ tail: TAIL });
      this.replace(page);
      this.following = true;
      this.pre.scrollTop = this.pre.scrollHeight;
    });
  }

  close() {
    this.observer.disconnect();
    this.el.remove();
  }

  /** Lines from the event stream: drawn when the view shows the end, counted otherwise. */
  live(first, lines) {
    this.total = Math.max(this.total, first + lines.length);
    if (this.pending) {
      this.pending.push([first, lines]);
      return;
    }
    if (this.following && first <= this.hi) this.append(first, lines.slice(this.hi - first));
    this.drawState();
  }

  /** After the stream came back: fetch what it missed, if the view shows the end. */
  catchUp() {
    if (!this.following || this.busy) return;
    this.run(async () => {
      for (;;) {
        const page = await this.fetch({ first: this.hi, count: PAGE });
        this.total = Math.max(this.total, page.total);
        this.append(page.first, page.lines);
        if (!page.lines.length || this.hi >= page.total) break;
      }
    });
  }

  jump(first) {
    return this.run(async () => {
      const page = await this.fetch(first === null ? { tail: TAIL } : { first, count: PAGE });
      this.replace(page);
      this.following = first === null || this.hi >= this.total;
      this.pre.scrollTop = first === null ? this.pre.scrollHeight : 0;
    });
  }

  firstError() {
    return this.run(async () => {
      const { data } = await this.api(`${this.linesPath}&find=error`);
      if (data.line === null) {
        this.toast(`No line of this log reads as an error (${data.total.toLocaleString("en")} lines)`);
        return;
      }
      await this.show(data.line);
    });
  }

  /** Show the lines around line `n` (from 0), it marked and in view. */
  reveal(n) {
    return this.run(() => this.show(n));
  }

  async show(n) {
    const page = await this.fetch({ first: Math.max(0, n - CONTEXT), count: PAGE });
    this.replace(page);
    this.following = this.hi >= this.total;
    const line = this.lines.querySelector(`[data-n="${n + 1}"]`);
    line?.classList.add("found");
    line?.scrollIntoView({ block: "center" });
  }

  /** Fetch the page before (-1) or after (1) the lines shown. */
  more(direction) {
    if (this.busy) return;
    if (direction < 0 && this.lo === 0) return;
    if (direction > 0 && this.hi >= this.total) return;
    this.run(async () => {
      if (direction < 0) {
        const first = Math.max(0, this.lo - PAGE);
        const page = await this.fetch({ first, count: this.lo - first });
        const before = this.pre.scrollHeight;
        this.prepend(page.first, page.lines);
        this.pre.scrollTop += this.pre.scrollHeight - before; // the lines read stay where they were
      } else {
        const page = await this.fetch({ first: this.hi, count: PAGE });
        this.append(page.first, page.lines);
        this.following = this.hi >= page.total;
      }
    });
  }

  // -- fetching and drawing -----------------------------------------------------------------------

  async run(work) {
    if (this.busy) await this.busy.catch(() => {});
    this.pending = [];
    this.busy = (async () => {
      try {
        await work();
        for (const [first, lines] of this.pending) {
          if (this.following && first <= this.hi) this.append(first, lines.slice(this.hi - first));
        }
      } catch (error) {
        this.toast(error.message, true);
      } finally {
        this.pending = null;
        this.busy = null;
        this.drawState();
      }
    })();
    return this.busy;
  }

  async fetch(query) {
    const params = Object.entries(query).map(([k, v]) => `&${k}=${v}`).join("");
    const { data } = await this.api(this.linesPath + params);
    this.total = Math.max(this.total, data.total);
    return data;
  }

  replace(page) {
    this.lines.replaceChildren();
    this.state = plain();
    this.lo = this.hi = page.first;
    this.append(page.first, page.lines);
  }

  append(first, lines) {
    if (!lines.length || first !== this.hi) return;
    const frag = document.createDocumentFragment();
    lines.forEach(([tag, text], i) => frag.append(this.line(first + i, tag, text)));
    const follow = this.pre.scrollTop + this.pre.clientHeight >= this.pre.scrollHeight - 8;
    this.lines.append(frag);
    this.hi = first + lines.length;
    while (this.hi - this.lo > MAX_LINES) {
      this.lines.firstChild.remove();
      this.lo++;
    }
    if (follow && this.following) this.pre.scrollTop = this.pre.scrollHeight;
  }

  prepend(first, lines) {
    if (!lines.length || first + lines.length !== this.lo) return;
    const state = plain(); // colours left on by the lines shown before these are not known here
    const frag = document.createDocumentFragment();
    lines.forEach(([tag, text], i) => frag.append(this.line(first + i, tag, text, state)));
    this.lines.prepend(frag);
    this.lo = first;
    while (this.hi - this.lo > MAX_LINES) {
      this.lines.lastChild.remove();
      this.hi--;
      this.following = false;
    }
  }

  line(n, tag, text, state = this.state) {
    const span = el("span", `line ${tag}`, ...render(text, state), "\n");
    span.dataset.n = n + 1;
    return span;
  }

  drawState() {
    const shown = this.hi > this.lo ? ` · showing ${(this.lo + 1).toLocaleString("en")}–${this.hi.toLocaleString("en")}` : "";
    this.count.textContent = `${this.total.toLocaleString("en")} line${this.total === 1 ? "" : "s"}${shown}`;
    this.earlier.hidden = this.lo === 0;
    this.earlier.textContent = `↑ ${this.lo.toLocaleString("en")} earlier line${this.lo === 1 ? "" : "s"}`;
    const after = this.total - this.hi;
    this.later.hidden = after <= 0;
    this.later.textContent = `↓ ${after.toLocaleString("en")} later line${after === 1 ? "" : "s"}`;
  }
}

function el(tag, className, ...children) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  node.append(...children);
  return node;
}

function button(text, title, onclick, className = "") {
  const node = el("button", className, text);
  node.type = "button";
  node.title = title;
  node.addEventListener("click", onclick);
  return node;
}
