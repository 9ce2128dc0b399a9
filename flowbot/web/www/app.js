// flowbot's web page: one hand-written module, no framework, no build step.
//
// Views are chosen by the URL's fragment (#/, #/builders/NAME, #/builds/ID, #/workers, #/changes,
// #/queue, #/pullrequests). Each view makes one API call (the build page a second for the log tail) and then
// follows the master's event stream, changing only what an event touches. Everything that comes
// from the master is put on the page as text (textContent, attributes), never parsed as HTML.

import { LogView } from "./log.js";
import { testsPanel } from "./tests.js";
import { artifactsPanel } from "./artifacts.js";
import { durationBars, failureRate, resultStrip } from "./charts.js";
import { gridView, searchView } from "./history.js";
import { pullRequestLink, pullRequestsView } from "./pullrequests.js";
import { matricesList, matrixView } from "./matrix.js";

const main = document.getElementById("main");
const OVERVIEW_BUILDS = 12;
const me = { user: null, csrf: null, control: "open", login: false, sso: null };
let view = null; // the current view: { stream, close() }

// -- small helpers ------------------------------------------------------------------------------

/** Make an element: h("a", {href: "#/", class: "x"}, "text", child...). Strings become text nodes. */
function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) el.append(child);
  }
  return el;
}

const enc = encodeURIComponent;
const buildHref = (id) => `#/builds/${enc(id)}`;
const builderHref = (name) => `#/builders/${enc(name)}`;

/** A link only for http(s) addresses: anything else (javascript:...) is shown as text. */
function safeLink(url, text) {
  try {
    const parsed = new URL(url, location.href);
    if (parsed.protocol === "http:" || parsed.protocol === "https:") {
      return h("a", { href: parsed.href, rel: "noopener noreferrer", target: "_blank" }, text);
    }
  } catch { /* not a URL */ }
  return text;
}

function ago(ts) {
  if (!ts) return "";
  const s = Math.max(0, Date.now() / 1000 - ts);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return new Date(ts * 1000).toLocaleDateString();
}

function duration(seconds) {
  if (seconds === null || seconds === undefined || seconds < 0) return "";
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  if (seconds < 60) return `${Math.round(seconds)} s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

/** A span whose text is kept up to date ("3 min ago", or a running build's duration). */
function timeText(kind, from, to = null) {
  const el = h("span", { class: "ticking", dataset: { kind, from: from ?? "", to: to ?? "" } });
  tick(el);
  return el;
}

function tick(el) {
  const from = Number(el.dataset.from) || null;
  const to = Number(el.dataset.to) || null;
  el.textContent = el.dataset.kind === "ago" ? ago(from) : from ? duration((to || Date.now() / 1000) - from) : "";
}
setInterval(() => document.querySelectorAll(".ticking").forEach(tick), 5000);

const short = (revision) => (revision ? revision.slice(0, 10) : "");

function resultBadge(result, running = false) {
  const name = result || (running ? "running" : "pending");
  return h("span", { class: `result r-${name}`, dataset: { result: name } }, name);
}

let toastTimer = null;
function toast(text, error = false) {
  const el = document.getElementById("toast");
  el.textContent = text;
  el.className = `toast show${error ? " error" : ""}`;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (el.className = "toast"), error ? 6000 : 3000);
}

// -- the API and the event stream ---------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") {
    headers["Content-Type"] = "application/json";
    if (me.csrf) headers["X-Flowbot-CSRF"] = me.csrf;
  }
  const answer = await fetch(path, {
    method, headers, credentials: "same-origin", body: method === "GET" ? undefined : JSON.stringify(body ?? {}),
  });
  const json = (answer.headers.get("Content-Type") || "").startsWith("application/json");
  const data = json ? await answer.json() : await answer.text();
  if (!answer.ok) throw new ApiError(answer.status, (json && data.error) || `HTTP ${answer.status}`);
  return { data, headers: answer.headers };
}

/** Run a control action; on 401 offer the login form, on any error say what went wrong. */
async function act(what, path, body) {
  try {
    const { data } = await api(path, { method: "POST", body });
    toast(what);
    return data;
  } catch (error) {
    if (error.status === 401 && (me.login || me.sso)) showLogin();
    toast(error.message, true);
    return null;
  }
}

/**
 * The master's events for the current view. Opens the WebSocket, then calls load() once the
 * stream is live; events that arrive meanwhile wait until load() is done. After a broken
 * connection it reconnects with since=<last id>, so no finished build is missed; when the master
 * could only replay from its store, the view is loaded again, else onResume() is called (live log
 * lines are never replayed: a view showing logs fetches what they missed).
 */
class Stream {
  constructor(params, load, onEvent, onResume = null) {
    this.params = params;
    this.load = load;
    this.onEvent = onEvent;
    this.onResume = onResume;
    this.since = null;
    this.delay = 500;
    this.closed = false;
    this.connect();
  }

  connect() {
    const query = new URLSearchParams(this.params);
    if (this.since !== null) query.set("since", this.since);
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = (this.ws = new WebSocket(`${scheme}://${location.host}/api/events?${query}`));
    let queue = [];
    ws.onmessage = async (message) => {
      const event = JSON.parse(message.data);
      if (event.type === "hello") {
        live(true);
        this.delay = 500;
        const first = this.since === null;
        if (first) this.since = event.last_id;
        if (first || event.replay === "store") {
          try {
            await this.load();
          } catch (error) {
            main.replaceChildren(h("p", { class: "muted" }, `Could not load this page: ${error.message}`));
          }
          const waiting = queue;
          queue = null;
          waiting.forEach((e) => this.deliver(e));
        } else {
          queue = null;
          this.onResume?.();
        }
        return;
      }
      if (queue) queue.push(event);
      else this.deliver(event);
    };
    ws.onclose = () => {
      live(false);
      if (this.closed) return;
      setTimeout(() => !this.closed && this.connect(), this.delay);
      this.delay = Math.min(this.delay * 2, 10000);
    };
  }

  deliver(event) {
    if (typeof event.id === "number" && event.id > this.since) this.since = event.id;
    try {
      this.onEvent(event);
    } catch (error) {
      console.error("event", event, error);
    }
  }

  close() {
    this.closed = true;
    this.ws.close();
  }
}

function live(on) {
  const el = document.getElementById("live");
  el.className = on ? "live" : "live off";
  el.title = on ? "live updates: on" : "live updates: reconnecting";
}

// -- login ------------------------------------------------------------------------------------------

async function whoami() {
  try {
    Object.assign(me, (await api("/api/whoami")).data);
  } catch (error) {
    if (error.status === 401) Object.assign(me, { login: true, control: "users" });
  }
  drawUser();
}

function drawUser() {
  const el = document.getElementById("user");
  el.replaceChildren();
  if (me.user) {
    el.append(h("span", {}, me.user), h("button", { type: "button", onclick: logout }, "Log out"));
  } else if (me.login || me.sso) {
    el.append(h("button", { type: "button", onclick: showLogin }, "Log in"));
  }
}

/** A link to log in through single sign-on, coming back to this page. */
function ssoLink() {
  const back = encodeURIComponent(`/${location.hash}`);
  return h("a", { class: "button primary sso", href: `${me.sso.url}?next=${back}` }, `Log in with ${me.sso.name}`);
}

function showLogin() {
  const user = h("input", { name: "user", autocomplete: "username", required: true });
  const password = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true });
  const dialog = h("dialog", { class: "login" });
  const form = h("form", { class: "fields", method: "dialog" },
    me.login ? [
      h("label", { for: "login-user" }, "User"), Object.assign(user, { id: "login-user" }),
      h("label", { for: "login-password" }, "Password"), Object.assign(password, { id: "login-password" }),
    ] : [],
    h("div", { class: "actions" },
      me.sso ? ssoLink() : null,
      me.login ? h("button", { class: "primary", type: "submit" }, "Log in") : null,
      h("button", { type: "button", onclick: () => dialog.close() }, "Cancel")));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const { data } = await api("/api/login", { method: "POST", body: { user: user.value, password: password.value } });
      Object.assign(me, data);
      dialog.close();
      drawUser();
      toast(`Logged in as ${data.user}`);
    } catch (error) {
      toast(error.message, true);
    }
  });
  dialog.append(h("h2", {}, "Log in"), form);
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  if (me.login) user.focus();
}

async function logout() {
  await api("/api/logout", { method: "POST" }).catch(() => {});
  Object.assign(me, { user: null, csrf: null });
  drawUser();
}

// -- forms --------------------------------------------------------------------------------------

/** The input of one typed field the master describes (a force form's, an approval's). */
function fieldInput(field, id) {
  if (field.type === "bool") {
    return h("input", { type: "checkbox", id, name: field.name, checked: Boolean(field.default) });
  }
  if (field.type === "choice") {
    return h("select", { id, name: field.name, required: field.required },
      (field.choices || []).map((c) => h("option", { value: c, selected: c === field.default }, c)));
  }
  const int = field.type === "int";
  const input = h("input", {
    id, name: field.name, type: int ? "number" : "text", required: field.required,
    min: int ? field.minimum : null, max: int ? field.maximum : null, step: int ? 1 : null,
  });
  input.value = field.default ?? "";
  return input;
}

/** The value a field's input holds, as the API takes it. */
function fieldValue(field, input) {
  const value = field.type === "bool" ? input.checked : input.value;
  return field.type === "int" ? (value === "" ? null : Number(value)) : value;
}

/** The force form of a builder, drawn from the fields the master describes (typed parameters too). */
function forceForm(builder, onDone) {
  const form = h("form", { class: "fields force-form", "aria-label": `Force a build of ${builder.name}` });
  const inputs = [];
  for (const field of builder.force.fields) {
    const id = `force-${builder.name}-${field.name}`;
    const input = fieldInput(field, id);
    inputs.push([field, input]);
    form.append(h("label", { for: id }, field.label || field.name), input);
  }
  form.append(h("div", { class: "actions" },
    h("button", { class: "primary", type: "submit" }, "Force build"),
    h("button", { type: "button", onclick: () => onDone(null) }, "Cancel")));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { properties: {} };
    for (const [field, input] of inputs) {
      const value = fieldValue(field, input);
      if (["reason", "branch", "revision"].includes(field.name)) body[field.name] = value || null;
      else body.properties[field.name] = value;
    }
    const answer = await act(`Forced ${builder.name}`, `/api/builders/${enc(builder.name)}/force`, body);
    if (answer) onDone(answer);
  });
  return form;
}

/** What a build waiting for approval asks, with its form and the Approve and Reject buttons. */
function approvalForm(build, approval) {
  const form = h("form", { class: "fields approval-form card", "aria-label": `Approve or reject ${approval.name}` });
  const inputs = [];
  for (const field of approval.fields) {
    const id = `approval-${build.id}-${field.name}`;
    const input = fieldInput(field, id);
    inputs.push([field, input]);
    form.append(h("label", { for: id }, field.label || field.name), input);
  }
  const comment = h("input", { id: `approval-${build.id}-comment`, name: "comment", type: "text" });
  form.append(h("label", { for: comment.id }, "Comment"), comment);
  const decide = async (verdict) => {
    const body = { comment: comment.value };
    if (verdict === "approve") body.properties = Object.fromEntries(inputs.map(([f, i]) => [f.name, fieldValue(f, i)]));
    await act(`Build #${build.number} ${verdict === "approve" ? "approved" : "rejected"}`,
      `/api/builds/${enc(build.id)}/${verdict}`, body);
  };
  form.addEventListener("submit", (e) => { e.preventDefault(); decide("approve"); });
  form.append(h("div", { class: "actions" },
    h("button", { class: "primary approve", type: "submit" }, "Approve"),
    h("button", { class: "danger reject", type: "button", onclick: () => decide("reject") }, "Reject")));
  return h("div", { class: "approval" },
    h("h2", {}, `Waiting for approval: ${approval.name}`),
    approval.prompt ? h("p", {}, approval.prompt) : null, form);
}

// -- the overview: builders and their latest builds ----------------------------------------------

function overview(tag = null) {
  // builder name -> { cells, state, pending:Set, unlisted, running:Set }: the listing names the first
  // few pending requests, and counts those it does not name (unlisted)
  const rows = new Map();

  function cell(build) {
    const running = build.result === null || build.result === undefined;
    const title = [`${build.builder} #${build.number}`, build.result || "running", build.branch, short(build.revision),
      build.worker && `on ${build.worker}`].filter(Boolean).join(" · ");
    return h("a", {
      class: `cell ${running ? "r-running" : `r-${build.result}`}`, href: buildHref(build.id), title,
      dataset: { build: build.id, result: build.result || "running" },
    }, `#${build.number}`);
  }

  function drawState(row) {
    const parts = [];
    if (row.running.size) parts.push(`${row.running.size} running`);
    const pending = row.pending.size + row.unlisted;
    if (pending) parts.push(`${pending} pending`);
    row.state.textContent = parts.join(", ") || "idle";
  }

  function takeRequest(row, requestId) {
    if (!row.pending.delete(requestId) && row.unlisted > 0) row.unlisted -= 1;
  }

  function put(build, started) {
    const row = rows.get(build.builder);
    if (!row) return;
    const fresh = cell(build);
    const old = row.cells.querySelector(`[data-build="${CSS.escape(String(build.id))}"]`);
    if (old) old.replaceWith(fresh);
    else {
      row.cells.prepend(fresh);
      while (row.cells.children.length > OVERVIEW_BUILDS) row.cells.lastChild.remove();
    }
    if (build.result) row.running.delete(build.id);
    else row.running.add(build.id);
    if (started) takeRequest(row, build.request_id);
    else row.pending.delete(build.request_id);
    drawState(row);
  }

  async function load() {
    const { data } = await api(`/api/builders?builds=${OVERVIEW_BUILDS}`);
    const grid = h("div", { class: "grid" });
    rows.clear();
    // Builders grouped by their first tag (untagged ones last), or only those with the tag chosen.
    const tags = [...new Set(data.builders.flatMap((b) => b.tags || []))].sort();
    const shown = data.builders.filter((b) => tag === null || (b.tags || []).includes(tag));
    const group = (b) => (tag === null ? (b.tags || [])[0] ?? null : tag);
    shown.sort((a, b) => (group(a) === null) - (group(b) === null) || String(group(a)).localeCompare(String(group(b))));
    let heading;
    for (const builder of shown) {
      if (tags.length && tag === null && group(builder) !== heading) {
        heading = group(builder);
        grid.append(h("h2", { class: "group", dataset: { tag: heading ?? "" } }, heading ?? "untagged"));
      }
      const row = {
        cells: h("div", { class: "cells" }),
        state: h("span", { class: "state" }),
        pending: new Set(builder.pending_requests),
        unlisted: builder.pending - builder.pending_requests.length,
        running: new Set(),
      };
      rows.set(builder.name, row);
      for (const build of builder.builds) {
        row.cells.append(cell(build));
        if (!build.result) row.running.add(build.id);
      }
      drawState(row);
      const el = h("div", { class: "row", dataset: { builder: builder.name } },
        h("a", { class: "name", href: builderHref(builder.name), title: builder.description || builder.name }, builder.name),
        row.state, row.cells);
      if (builder.force) {
        let form = null;
        el.append(h("button", {
          type: "button", class: "force", "aria-label": `Force ${builder.name}`,
          onclick: () => {
            if (form) { form.remove(); form = null; return; }
            form = forceForm(builder, () => { form.remove(); form = null; });
            el.append(form);
            form.querySelector("input")?.focus();
          },
        }, "Force…"));
      } else {
        el.append(h("span", { class: "force" }));
      }
      grid.append(el);
    }
    const chips = tags.length ? h("nav", { class: "tag-filter", "aria-label": "Filter builders by tag" },
      [null, ...tags].map((t) => h("a", {
        href: t === null ? "#/" : `#/?tag=${enc(t)}`, class: t === tag ? "chip current" : "chip",
        "aria-current": t === tag ? "page" : null,
      }, t ?? "All"))) : null;
    main.replaceChildren(h("h1", {}, "Builders"), chips ?? "",
      data.builders.length ? grid : h("p", { class: "muted" }, "The pipeline has no builders."));
  }

  const stream = new Stream(
    { types: "build.started,build.finished,request.new,request.cancelled" },
    load,
    (event) => {
      if (event.build) put(event.build, event.type === "build.started");
      else if (event.type === "request.new") rows.get(event.builder)?.pending.add(event.request_id);
      else if (event.type === "request.cancelled" && rows.has(event.builder)) takeRequest(rows.get(event.builder), event.request_id);
      const row = rows.get(event.builder || event.build?.builder);
      if (row) drawState(row);
    });
  return stream;
}

// -- a builder: its recent builds and its force form -----------------------------------------------

function builderView(name) {
  let tbody = null;
  const charts = h("div", { class: "charts card" });
  const builds = new Map(); // id -> build, for the charts

  /** The charts of the builder's builds shown, oldest first (the newest 50). */
  function drawCharts() {
    const oldest = [...builds.values()].sort((a, b) => a.id - b.id).slice(-50);
    charts.hidden = !oldest.length;
    charts.replaceChildren(...(oldest.length ? [resultStrip(oldest), durationBars(oldest), failureRate(oldest)] : []));
  }

  function buildRow(build) {
    return h("tr", { dataset: { build: build.id } },
      h("td", {}, h("a", { href: buildHref(build.id) }, `#${build.number}`)),
      h("td", {}, resultBadge(build.result, !build.result)),
      h("td", {}, build.branch || ""),
      h("td", { class: "mono" }, short(build.revision)),
      h("td", { class: "hide-narrow" }, build.worker),
      h("td", {}, timeText("ago", build.started_at)),
      h("td", {}, timeText("duration", build.started_at, build.finished_at)));
  }

  async function load() {
    const { data: builder } = await api(`/api/builders/${enc(name)}?builds=50`);
    tbody = h("tbody", {}, builder.builds.map(buildRow));
    const parts = [h("h1", {}, builder.name)];
    if (builder.description) parts.push(h("p", { class: "muted" }, builder.description));
    parts.push(h("p", { class: "muted" }, `Workers: ${builder.workers.join(", ")} · Steps: ${builder.steps.join(" → ")}`));
    if (builder.force) {
      const slot = h("div", { class: "card" });
      const open = h("button", { type: "button", class: "primary force" }, "Force build…");
      open.addEventListener("click", () => {
        slot.replaceChildren(forceForm(builder, () => slot.replaceChildren(open)));
      });
      slot.append(open);
      parts.push(slot);
    }
    if (builder.matrix) {
      const list = await matricesList(ui, name);
      const axes = Object.entries(builder.matrix.axes).map(([axis, values]) => `${axis} (${values.length})`).join(" × ");
      parts.push(h("h2", {}, "Matrices"), h("p", { class: "muted" }, `${builder.matrix.size} cells: ${axes}`),
        list || h("p", { class: "muted" }, "No matrix built yet."));
    }
    builds.clear();
    builder.builds.forEach((b) => builds.set(b.id, b));
    drawCharts();
    parts.push(charts, h("h2", {}, "Builds"), h("div", { class: "scroll" }, h("table", {},
      h("thead", {}, h("tr", {}, ["Build", "Result", "Branch", "Revision", "Worker", "Started", "Took"].map(
        (t, i) => h("th", { class: i === 4 ? "hide-narrow" : null }, t)))), tbody)));
    main.replaceChildren(...parts);
  }

  return new Stream({ types: "build.started,build.finished", builder: name }, load, (event) => {
    if (!tbody || !event.build) return;
    builds.set(event.build.id, event.build);
    drawCharts(); // a build that starts or ends shows in the charts at once
    const fresh = buildRow(event.build);
    const old = tbody.querySelector(`[data-build="${CSS.escape(String(event.build.id))}"]`);
    if (old) old.replaceWith(fresh);
    else tbody.prepend(fresh);
  });
}

// -- a build: its facts, steps and logs, live ------------------------------------------------------

/** ``3 failed, 1 error, 120 passed``: test counts by outcome, what failed first. */
function describeTests(counts) {
  return ["failed", "error", "passed", "skipped"].filter((o) => counts[o])
    .map((o) => `${counts[o]} ${o === "error" && counts[o] > 1 ? "errors" : o}`).join(", ");
}

function buildView(id, tab = "steps", focus = null) {
  let build = null;
  let tabs = null; // Steps | Tests, the latter once the build has tests
  let tests = null; // the Tests panel
  let files = null; // the Artifacts section
  const steps = new Map(); // number -> { el, badge, took, log (pre or null), next (line number), pending }
  let list = null;
  let header = null;
  const showHidden = h("button", { type: "button", class: "show-hidden", onclick: () => {
    list.classList.toggle("show-hidden");
    drawShowHidden();
  } });

  /** Show the step's log `name` (in place of the one it shows). */
  function openLog(step, name = "stdio", line = null) {
    step.log?.close();
    step.logName = name;
    step.log = new LogView({
      buildId: id, step: step.number, name, label: `${build.builder}-${build.number}-${step.name}-${name}`, api, toast,
    });
    if (!step.logs.includes(name)) step.logs.push(name);
    step.el.append(step.log.el);
    drawLogTabs(step);
    if (line === null) step.log.open();
    else step.log.reveal(line);
  }

  function closeLog(step) {
    step.log?.close();
    step.log = null;
    drawLogTabs(step);
  }

  /** The names of a step's logs to switch between, when it has more than its stdio. */
  function drawLogTabs(step) {
    step.head.setAttribute("aria-expanded", String(Boolean(step.log)));
    step.tabs.replaceChildren(...(step.log && step.logs.length > 1 ? step.logs.map((name) => h("button", {
      type: "button", class: name === step.logName ? "tab current" : "tab", "aria-pressed": String(name === step.logName),
      onclick: () => openLog(step, name),
    }, name)) : []));
  }

  function drawTabs(counts) {
    const summary = describeTests(counts);
    tabs.hidden = !summary;
    tabs.testsTab.textContent = `Tests · ${summary}`;
    tabs.testsTab.classList.toggle("failing", Boolean(counts.failed || counts.error));
  }

  /** Once the build has ended: whether it has tests now (and the panel, if it was read, again). */
  async function refreshTests() {
    try {
      const { data } = await api(`/api/builds/${enc(id)}/tests?limit=1`);
      drawTabs(data.counts);
      if (tests.loaded) tests.load();
    } catch (error) {
      toast(error.message, true);
    }
  }

  /** After the stream reconnects: the lines each open log missed while it was away. */
  function catchUp() {
    for (const step of steps.values()) step.log?.catchUp();
  }

  /** "3 attempts" for a step its Retry ran again; nothing for one that ran once. */
  function attemptsText(attempts) {
    return attempts > 1 ? `${attempts} attempts` : "";
  }

  function stepItem(s) {
    const step = { number: s.number, name: s.name, log: null, logName: null, logs: s.logs?.length ? s.logs : ["stdio"] };
    step.badge = resultBadge(s.result, !s.result && s.started_at);
    step.took = timeText("duration", s.started_at, s.finished_at);
    step.summary = h("span", { class: "summary" }, s.summary || "");
    step.attempts = h("span", { class: "attempts" }, attemptsText(s.attempts));
    step.tabs = h("div", { class: "log-tabs" });
    const head = h("div", { class: "head", role: "button", tabindex: 0, "aria-expanded": "false" },
      step.badge, h("span", { class: "num" }, `${s.number + 1}.`), h("span", { class: "title" }, s.name),
      step.attempts, step.summary, step.took);
    step.head = head;
    const toggle = () => (step.log ? closeLog(step) : openLog(step));
    head.addEventListener("click", toggle);
    head.addEventListener("keydown", (e) => (e.key === "Enter" || e.key === " ") && (e.preventDefault(), toggle()));
    step.el = h("li", { class: s.hidden ? "step hidden-step" : "step", dataset: { step: s.number } }, head, step.tabs);
    steps.set(s.number, step);
    return step;
  }

  function drawHeader() {
    const running = !build.result;
    const actions = h("div", { class: "actions-bar" });
    if (running) {
      actions.append(h("button", {
        type: "button", class: "danger stop",
        onclick: () => act(`Stopping build #${build.number}`, `/api/builds/${enc(id)}/stop`, { reason: "stopped from the web page" }),
      }, "Stop"));
    } else {
      actions.append(h("button", {
        type: "button", class: "rebuild",
        onclick: async () => {
          const answer = await act(`Rebuild of #${build.number} requested`, `/api/builds/${enc(id)}/rebuild`, {});
          if (answer) location.hash = builderHref(build.builder);
        },
      }, "Rebuild"));
    }
    const facts = [
      ["Builder", h("a", { href: builderHref(build.builder) }, build.builder)],
      ["Reason", build.reason], ["Branch", build.branch], ["Revision", build.revision && h("span", { class: "mono" }, build.revision)],
      ["Worker", build.worker], ["Attempt", build.attempt > 1 && `${build.attempt} (a retry of this request)`],
      ["Started", timeText("ago", build.started_at)],
      ["Took", timeText("duration", build.started_at, build.finished_at)],
      ["Summary", build.summary],
    ];
    if (build.changes?.length) {
      facts.push(["Changes", h("ul", { class: "plain" }, build.changes.map((c) => h("li", {},
        h("a", { href: `#/changes/${c.id}` }, `${short(c.revision) || `change ${c.id}`}`),
        ` ${c.author}: ${(c.comments || "").split("\n")[0]}`)))]);
    }
    if (build.pull_request) {
      facts.splice(1, 0, ["Pull request", h("span", { class: "pull-request" }, pullRequestLink(ui, build.pull_request),
        " ", h("a", { href: "#/pullrequests?state=all", class: "muted" }, `(${build.pull_request.repository})`))]);
    }
    if (build.matrix_id) {
      const cell = Object.entries(build.properties || {}).filter(([, [, source]]) => source === "Matrix")
        .map(([name, [value]]) => `${name}=${value}`).join(", ");
      facts.push(["Matrix", h("span", {}, h("a", { href: `#/matrices/${build.matrix_id}`, class: "matrix-link" },
        `matrix ${build.matrix_id}`), cell ? ` (${cell})` : "")]);
    }
    const rebuildOf = build.properties?.rebuild_of?.[0];  // properties are [value, source]
    if (rebuildOf) {
      facts.push(["Rebuild of", h("a", { href: buildHref(rebuildOf) }, `build ${rebuildOf}`)]);
    }
    const dl = h("dl", { class: "facts" });
    for (const [label, value] of facts) if (value) dl.append(h("dt", {}, label), h("dd", {}, value));
    const fresh = h("div", {},
      h("h1", {}, h("a", { href: builderHref(build.builder) }, build.builder), `#${build.number}`,
        h("span", { id: "build-result" }, resultBadge(build.result, running))),
      actions, build.approval && !build.result ? approvalForm(build, build.approval) : null,
      h("div", { class: "card" }, dl));
    if (header) header.replaceWith(fresh);
    header = fresh;
  }

  /** The button that shows the steps the pipeline hides (hide_step_if), when there are any. */
  function drawShowHidden() {
    const count = list.querySelectorAll(".hidden-step").length;
    showHidden.hidden = count === 0;
    showHidden.parentElement?.toggleAttribute("hidden", count === 0); // the tab says "Steps" already
    showHidden.textContent = list.classList.contains("show-hidden")
      ? "Hide hidden steps" : `Show ${count} hidden step${count === 1 ? "" : "s"}`;
  }

  async function load() {
    build = (await api(`/api/builds/${enc(id)}`)).data;
    steps.clear();
    list = h("ul", { class: "steps" });
    header = null;
    drawHeader();
    const items = build.steps.map(stepItem);
    list.append(...items.map((s) => s.el));
    drawShowHidden();
    const stepsPanel = h("div", { class: "steps-panel", role: "tabpanel" }, h("h2", {}, "Steps ", showHidden), list);
    drawShowHidden();
    tests = testsPanel(id, api, toast);
    tests.el.hidden = true;
    tests.el.setAttribute("role", "tabpanel");
    const choose = (which) => {
      const onTests = which === "tests";
      stepsPanel.hidden = onTests;
      tests.el.hidden = !onTests;
      stepsTab.setAttribute("aria-selected", String(!onTests));
      testsTab.setAttribute("aria-selected", String(onTests));
      if (onTests && !tests.loaded) {
        tests.loaded = true;
        tests.load();
      }
    };
    const stepsTab = h("button", { type: "button", role: "tab", class: "tab", onclick: () => choose("steps") }, "Steps");
    const testsTab = h("button", { type: "button", role: "tab", class: "tab", onclick: () => choose("tests") }, "Tests");
    tabs = h("div", { class: "tabs", role: "tablist" }, stepsTab, testsTab);
    tabs.testsTab = testsTab;
    drawTabs(build.tests || {});
    files = artifactsPanel(id, api, toast);
    files.load();
    main.replaceChildren(header, tabs, stepsPanel, tests.el, files.el);
    choose(tab === "tests" && !tabs.hidden ? "tests" : "steps");
    if (focus && steps.has(focus.step)) {  // a line someone linked to (a search result)
      const step = steps.get(focus.step);
      if (step.el.classList.contains("hidden-step")) list.classList.add("show-hidden");
      openLog(step, focus.log, focus.line);
      return;
    }
    // Show what a person wants first: the running step, else the first shown that did not succeed.
    const interesting = build.steps.find((s) => !s.result) ||
      build.steps.find((s) => s.result && !s.hidden && !["SUCCESS", "SKIPPED"].includes(s.result));
    if (interesting) openLog(steps.get(interesting.number));
  }

  return new Stream({ build: id, types: "build.finished,build.approval,step.started,step.finished,log" }, load, (event) => {
    if (!build) return;
    if (event.type === "build.approval") {
      build.approval = event.approval;
      drawHeader();
    } else if (event.type === "build.finished") {
      Object.assign(build, event.build);
      drawHeader();
      refreshTests();
    } else if (event.type === "step.started") {
      if (steps.has(event.step)) return;
      const step = stepItem({ number: event.step, name: event.name, result: null, started_at: event.time });
      list.append(step.el);
      const previous = [...steps.values()].find((s) => s.log && s.number !== event.step);
      if (!previous || previous.number < event.step) openLog(step);
    } else if (event.type === "step.finished") {
      const step = steps.get(event.step);
      if (!step) return;
      step.badge.replaceWith((step.badge = resultBadge(event.result)));
      step.took.dataset.to = event.time;
      tick(step.took);
      step.el.classList.toggle("hidden-step", event.hidden);  // known once the step ends
      step.summary.textContent = event.summary || "";
      step.attempts.textContent = attemptsText(event.attempts);
      drawShowHidden();
      files.load(); // an upload's files are listed once its step ends
    } else if (event.type === "log") {
      const step = steps.get(event.step);
      if (!step) return;
      if (!step.logs.includes(event.log)) step.logs.push(event.log);
      if (step.log && step.logName === event.log) step.log.live(event.first, event.lines);
    }
  }, catchUp);
}

// -- workers, changes, the queue --------------------------------------------------------------

function workersView() {
  let tbody = null;
  const data = new Map();

  function state(w) {
    const parts = [w.connected ? "connected" : "offline"];
    if (w.shutting_down) parts.push("shutting down");
    if (w.paused) parts.push(w.paused_reason ? `paused: ${w.paused_reason}` : "paused");
    return parts.join(" · ");
  }

  /** Pause or unpause, and shut down (once its builds end; if it is already leaving, now). */
  function controls(w) {
    const path = (action) => `/api/workers/${enc(w.name)}/${action}`;
    const buttons = [w.paused
      ? h("button", { type: "button", onclick: () => act(`Unpaused ${w.name}`, path("unpause"), {}) }, "Unpause")
      : h("button", { type: "button", onclick: () => act(`Paused ${w.name}`, path("pause"), { reason: "paused from the web page" }) }, "Pause")];
    if (w.connected) {
      const now = Boolean(w.shutting_down);
      buttons.push(h("button", {
        type: "button", class: "danger",
        onclick: () => confirm(now ? `Shut ${w.name} down now? Its builds run again elsewhere.`
          : `Shut ${w.name} down once its running builds have ended?`)
          && act(`Shutting down ${w.name}`, path("shutdown"), { graceful: !now }),
      }, now ? "Shut down now" : "Shut down"));
    }
    return h("td", { class: "controls" }, buttons);
  }

  function row(w) {
    return h("tr", { dataset: { worker: w.name } },
      h("td", {}, h("span", { class: `dot${w.connected ? " on" : ""}${w.paused ? " paused" : ""}` }), w.name),
      h("td", { class: "state" }, state(w)),
      h("td", {}, timeText("ago", w.last_seen)),
      h("td", { class: "hide-narrow" }, [w.info?.hostname, w.info?.platform].filter(Boolean).join(" · ")),
      h("td", {}, w.running_builds.length
        ? w.running_builds.map((b) => h("a", { href: buildHref(b.id), class: "button" }, `${b.builder} #${b.number}`))
        : h("span", { class: "muted" }, "idle")),
      controls(w));
  }

  function redraw(name) {
    const w = data.get(name);
    if (!w || !tbody) return;
    tbody.querySelector(`[data-worker="${CSS.escape(name)}"]`)?.replaceWith(row(w));
  }

  async function load() {
    const { data: answer } = await api("/api/workers");
    data.clear();
    answer.workers.forEach((w) => data.set(w.name, w));
    tbody = h("tbody", {}, answer.workers.map(row));
    main.replaceChildren(h("h1", {}, "Workers"), h("div", { class: "scroll" }, h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "Worker"), h("th", {}, "State"), h("th", {}, "Last heard"),
        h("th", { class: "hide-narrow" }, "Host"), h("th", {}, "Running"), h("th", {}, ""))), tbody)));
  }

  const types = "worker.connected,worker.lost,worker.changed,build.started,build.finished";
  return new Stream({ types }, load, (event) => {
    if (event.type === "worker.changed") {
      const w = data.get(event.worker);
      if (!w) return;
      Object.assign(w, { paused: event.paused, paused_reason: event.paused_reason, shutting_down: event.shutting_down });
      redraw(w.name);
    } else if (event.type === "worker.connected" || event.type === "worker.lost") {
      const w = data.get(event.worker);
      if (!w) return;
      w.connected = event.type === "worker.connected";
      w.last_seen = event.time;
      if (event.info) w.info = event.info;
      if (!w.connected) Object.assign(w, { running_builds: [], shutting_down: false });
      redraw(w.name);
    } else if (event.build) {
      const w = data.get(event.build.worker);
      if (!w) return;
      w.running_builds = w.running_builds.filter((b) => b.id !== event.build.id);
      if (event.type === "build.started") w.running_builds.push(event.build);
      redraw(w.name);
    }
  });
}

/** Reload a list view a moment after an event (a burst of events costs one call). */
function debounced(fn, ms = 400) {
  let timer = null;
  return () => {
    clearTimeout(timer);
    timer = setTimeout(fn, ms);
  };
}

/** The builds a change caused, as cells linking to them. */
function buildCells(builds) {
  return h("span", { class: "cells" }, builds.map((b) => h("a", {
    class: `cell ${b.result ? `r-${b.result}` : "r-running"}`, href: buildHref(b.id), title: `${b.builder} #${b.number} ${b.result || "running"}`,
    dataset: { build: b.id },
  }, `${b.builder} #${b.number}`)));
}

function changesView() {
  async function load() {
    const { data } = await api("/api/changes?limit=100");
    const rows = data.changes.map((c) => h("tr", { dataset: { change: c.id } },
      h("td", {}, h("a", { href: `#/changes/${c.id}` }, c.id)),
      h("td", {}, timeText("ago", c.when)),
      h("td", {}, c.author),
      h("td", {}, c.branch || ""),
      h("td", { class: "mono" }, c.revlink ? safeLink(c.revlink, short(c.revision)) : short(c.revision)),
      h("td", {}, (c.comments || "").split("\n")[0]),
      h("td", {}, buildCells(c.builds)),
      h("td", { class: "hide-narrow", title: c.files.join("\n") }, c.files.length ? `${c.files.length} file(s)` : "")));
    main.replaceChildren(h("h1", {}, "Changes"), rows.length
      ? h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {},
        ["#", "When", "Author", "Branch", "Revision", "Comments", "Builds", "Files"].map((t, i) => h("th", { class: i === 7 ? "hide-narrow" : null }, t)))),
        h("tbody", {}, rows)))
      : h("p", { class: "muted" }, "No changes yet."));
  }
  const reload = debounced(load);
  return new Stream({ types: "change.new,build.started,build.finished" }, load, reload);
}

/** One change: what it is, and the builds it caused. */
function changeView(changeId) {
  async function load() {
    const { data: c } = await api(`/api/changes/${enc(changeId)}`);
    const facts = [["Author", c.author], ["When", timeText("ago", c.when)], ["Branch", c.branch],
      ["Revision", c.revision && (c.revlink ? safeLink(c.revlink, c.revision) : h("span", { class: "mono" }, c.revision))],
      ["Repository", c.repository], ["Files", c.files.join(", ")]];
    const dl = h("dl", { class: "facts" });
    for (const [label, value] of facts) if (value) dl.append(h("dt", {}, label), h("dd", {}, value));
    main.replaceChildren(h("h1", {}, `Change ${c.id}`), h("div", { class: "card" }, h("pre", { class: "comments" }, c.comments || ""), dl),
      h("h2", {}, "Builds"), c.builds.length ? buildCells(c.builds) : h("p", { class: "muted" }, "It caused no build (yet)."));
  }
  return new Stream({ types: "build.started,build.finished" }, load, debounced(load));
}

function queueView() {
  async function load() {
    const { data } = await api("/api/buildrequests?pending=true");
    const rows = data.buildrequests.map((r) => h("tr", { dataset: { request: r.id } },
      h("td", {}, r.id),
      h("td", {}, h("a", { href: builderHref(r.builder) }, r.builder), r.cell ? h("span", { class: "muted cell-values" },
        " ", h("a", { href: `#/matrices/${r.matrix_id}` }, Object.entries(r.cell).map(([n, v]) => `${n}=${v}`).join(", "))) : ""),
      h("td", {}, r.reason),
      h("td", {}, [r.branch, short(r.revision)].filter(Boolean).join(" @ ")),
      h("td", {}, timeText("ago", r.submitted_at)),
      h("td", { class: "why" }, r.waiting || ""),
      h("td", {}, r.claimed_at ? "running" : h("button", {
        type: "button", class: "danger",
        onclick: () => act(`Cancelled request ${r.id}`, `/api/buildrequests/${enc(r.id)}/cancel`, {}),
      }, "Cancel"))));
    main.replaceChildren(h("h1", {}, "Queue"), rows.length
      ? h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {},
        ["#", "Builder", "Reason", "Source", "Waiting since", "Why", ""].map((t) => h("th", {}, t)))), h("tbody", {}, rows)))
      : h("p", { class: "muted" }, "Nothing is waiting."));
  }
  const reload = debounced(load);
  const types = "request.new,request.cancelled,build.started,build.finished,worker.connected,worker.lost,worker.changed";
  return new Stream({ types }, load, reload);
}

// -- routing --------------------------------------------------------------------------------------

/** What the views in other modules use of this one. */
const ui = { h, api, toast, main, Stream, debounced, short, buildHref, builderHref, timeText, safeLink, buildCells };

const routes = [
  [/^#?\/?(?:\?tag=(.*))?$/, "overview", (m) => overview(m[1] === undefined ? null : decodeURIComponent(m[1]))],
  [/^#\/builders\/([^/]+)$/, "overview", (m) => builderView(decodeURIComponent(m[1]))],
  [/^#\/builds\/(\d+)(?:\/(tests))?$/, "overview", (m) => buildView(m[1], m[2] || "steps")],
  [/^#\/builds\/(\d+)\/steps\/(\d+)\/line\/(\d+)(?:\?log=([^&]+))?$/, "overview", (m) => buildView(m[1], "steps",
    { step: Number(m[2]), line: Number(m[3]) - 1, log: m[4] ? decodeURIComponent(m[4]) : "stdio" })],
  [/^#\/workers$/, "workers", () => workersView()],
  [/^#\/changes$/, "changes", () => changesView()],
  [/^#\/changes\/(\d+)$/, "changes", (m) => changeView(m[1])],
  [/^#\/queue$/, "queue", () => queueView()],
  [/^#\/pullrequests(\?state=all)?$/, "pullrequests", (m) => pullRequestsView(ui, Boolean(m[1]))],
  [/^#\/grid$/, "grid", () => gridView(ui)],
  [/^#\/matrices\/(\d+)$/, "overview", (m) => matrixView(ui, m[1])],
  [/^#\/search(?:\?q=(.*))?$/, "search", (m) => searchView(ui, decodeURIComponent(m[1] || ""))],
];

function route() {
  view?.close();
  view = null;
  const hash = location.hash || "#/";
  for (const [pattern, nav, make] of routes) {
    const match = hash.match(pattern);
    if (match) {
      document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("current", a.dataset.view === nav));
      main.replaceChildren(h("p", { class: "muted" }, "Loading…"));
      view = make(match);
      return;
    }
  }
  main.replaceChildren(h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/" }, "Back to the builders")));
}

window.addEventListener("hashchange", route);
whoami();
route();
