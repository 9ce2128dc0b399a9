// flowbot's notebook panel: draws what the Python side keeps in the widget's traits, the way the
// master's web page does, and sets the `command`, `selected` and `follow` traits when the user
// acts. One ES module, no build step, nothing fetched: it runs wherever anywidget does.

const RESULTS = ["SUCCESS", "WARNINGS", "FAILURE", "SKIPPED", "EXCEPTION", "RETRY", "CANCELLED"];

function h(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value === true) node.setAttribute(name, "");
    else node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child !== undefined && child !== null && child !== false) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }
  return node;
}

function resultClass(result) {
  return RESULTS.includes(result) ? `r-${result}` : "r-running";
}

function chip(build) {
  const result = build.result || "running";
  return h(
    "span",
    { class: `cell ${resultClass(build.result)}`, title: `#${build.number}: ${result} on ${build.worker}` },
    `#${build.number}`,
  );
}

/** A matrix as a grid: a row per combination of all axes but the last, a column per value of the last. */
function matrixGrid(matrix, pick) {
  const axes = Object.entries(matrix.axes);
  const [column, values] = axes[axes.length - 1];
  const names = axes.map(([name]) => name);
  const key = (cell) => JSON.stringify(names.map((n) => cell[n]));
  const cells = new Map(matrix.cells.map((cell) => [key(cell.values), cell]));
  const rows = axes.slice(0, -1).reduce((all, [name, vs]) => all.flatMap((row) => vs.map((v) => ({ ...row, [name]: v }))), [{}]);
  const shown = (cell) => {
    const result = cell.result || (cell.build_id ? "running" : "pending");
    const attributes = { class: `cell ${cell.result || cell.build_id ? resultClass(cell.result) : "r-pending"}`, title: Object.entries(cell.values).map(([n, v]) => `${n}=${v}`).join(", ") + `: ${result}` };
    if (cell.build_id) attributes.onclick = () => pick(cell.build_id);
    return h("span", attributes, result);
  };
  return h(
    "table",
    { class: "matrix", "data-matrix": matrix.id },
    h("tr", {}, h("th", {}, `matrix ${matrix.id}: ${matrix.result || "running"}`), ...values.map((v) => h("th", {}, `${column}=${v}`))),
    ...rows.map((row) => h(
      "tr",
      {},
      h("th", {}, Object.values(row).join(" · ")),
      ...values.map((v) => {
        const cell = cells.get(key({ ...row, [column]: v }));
        return h("td", {}, cell ? shown(cell) : "");
      }),
    )),
  );
}

function badge(result) {
  return h("span", { class: `result ${resultClass(result)}` }, result || "running");
}

function render({ model, el }) {
  el.classList.add("flowbot-panel");
  const top = h("div", { class: "top" });
  const builders = h("div", { class: "grid" });
  const queue = h("ul", { class: "queue" });
  const workers = h("tbody");
  const picker = h("select", { class: "picker", "aria-label": "build" });
  const follow = h("input", { type: "checkbox", class: "follow" });
  const stop = h("button", { class: "danger stop", type: "button" }, "Stop build");
  const summary = h("div", { class: "summary" });
  const approval = h("form", { class: "fields approval", onsubmit: (event) => event.preventDefault() });
  const steps = h("ol", { class: "steps" });
  const log = h("pre", { class: "log" });
  const formBuilder = h("select", { class: "force-builder", "aria-label": "builder" });
  const fields = h("div", { class: "fields" });
  const forceButton = h("button", { class: "primary force", type: "button" }, "Force build");
  const message = h("div", { class: "message" });
  el.append(
    top,
    h("section", {}, h("h2", {}, "Builders"), builders),
    h(
      "div",
      { class: "columns" },
      h("section", {}, h("h2", {}, "Queue"), queue),
      h(
        "section",
        {},
        h("h2", {}, "Workers"),
        h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "worker"), h("th", {}, "state"), h("th", {}, "running"))), workers),
      ),
    ),
    h(
      "section",
      { class: "build" },
      h("h2", {}, "Build"),
      h("div", { class: "actions-bar" }, picker, h("label", {}, follow, " follow the newest build"), stop),
      summary,
      approval,
      steps,
      log,
    ),
    h(
      "section",
      { class: "force-form" },
      h("h2", {}, "Force a build"),
      h("form", { class: "fields", onsubmit: (event) => event.preventDefault() }, h("label", {}, "Builder"), formBuilder, fields, h("div", { class: "actions" }, forceButton)),
    ),
    message,
  );

  // Log: follow its end unless the reader scrolled up to read.
  let atEnd = true;
  log.addEventListener("scroll", () => {
    atEnd = log.scrollHeight - log.scrollTop - log.clientHeight < 8;
  });

  function drawOverview() {
    const overview = model.get("overview") || {};
    const master = overview.master || {};
    top.replaceChildren(
      h("span", { class: "brand" }, "flowbot"),
      master.running === false
        ? h("span", { class: "muted" }, "the master is not running")
        : h("span", {}, `${master.builds ?? 0} running · ${master.queued ?? 0} queued`),
      master.url ? h("a", { href: master.url, target: "_blank", rel: "noopener" }, master.url) : "",
    );
    builders.replaceChildren(
      ...(overview.builders || []).map((builder) =>
        h(
          "div",
          { class: "row", "data-builder": builder.name },
          h("span", { class: "name" }, builder.name),
          h("span", { class: "cells" }, builder.builds.length ? builder.builds.map(chip) : h("span", { class: "muted" }, "no builds yet")),
          builder.matrix ? matrixGrid(builder.matrix, pick) : "",
        ),
      ),
    );
    const waiting = overview.queue || [];
    queue.replaceChildren(
      ...(waiting.length
        ? waiting.map((request) => h("li", {}, h("b", {}, request.builder), `: ${request.reason || "(no reason)"}`))
        : [h("li", { class: "muted" }, "empty")]),
    );
    workers.replaceChildren(
      ...(overview.workers || []).map((worker) => {
        const state = [];
        if (worker.connected) state.push(`connected, seen ${worker.seen} s ago`);
        else state.push("offline");
        if (worker.shutting_down) state.push("shutting down");
        if (worker.paused) state.push(worker.paused_reason ? `paused: ${worker.paused_reason}` : "paused");
        const dot = worker.paused ? "dot paused" : worker.connected ? "dot on" : "dot";
        return h(
          "tr",
          { "data-worker": worker.name },
          h("td", {}, h("span", { class: dot }), worker.name),
          h("td", { class: worker.connected ? "" : "offline" }, state.join(", ")),
          h("td", {}, worker.running.join(", ")),
        );
      }),
    );
  }

  function drawPicker() {
    const selected = model.get("selected");
    picker.replaceChildren(
      ...(model.get("builds") || []).map((option) => h("option", { value: option.id, selected: option.id === selected }, option.label)),
    );
    follow.checked = model.get("follow");
  }

  function drawBuild() {
    const build = model.get("build") || {};
    stop.disabled = !build.running;
    if (!build.id) {
      summary.replaceChildren(h("span", { class: "muted" }, "no builds yet"));
      steps.replaceChildren();
      return;
    }
    summary.replaceChildren(h("b", {}, `${build.builder} #${build.number}`), " ", badge(build.result), ` on ${build.worker}`);
    drawApproval(build);
    steps.replaceChildren(
      ...build.steps.map((step) =>
        h(
          "li",
          { class: "step" },
          h("span", { class: "number" }, step.number),
          h("span", { class: "title" }, step.name),
          step.summary ? h("span", { class: "muted" }, step.summary) : "",
          badge(step.result),
        ),
      ),
    );
  }

  // The form of a build that waits for approval: kept as the user fills it, rebuilt for another one.
  let approvalShape = "";
  function drawApproval(build) {
    const shape = JSON.stringify([build.id, build.approval]);
    if (shape === approvalShape) return;
    approvalShape = shape;
    const waiting = build.approval;
    approval.hidden = !waiting;
    if (!waiting) return approval.replaceChildren();
    const inputs = waiting.fields.flatMap((field) => {
      let input;
      if (field.type === "bool") input = h("input", { type: "checkbox", name: field.name, checked: !!field.default });
      else if (field.choices) input = h("select", { name: field.name }, field.choices.map((c) => h("option", { value: c, selected: c === field.default }, c)));
      else input = h("input", { type: "text", name: field.name, value: field.default ?? "", placeholder: field.required ? "required" : "" });
      return [h("label", {}, field.label), input];
    });
    const comment = h("input", { type: "text", class: "comment", placeholder: "comment" });
    const decide = (action) => {
      const values = {};
      for (const input of approval.querySelectorAll("[name]")) values[input.name] = input.type === "checkbox" ? input.checked : input.value;
      command(action, { build: build.id, values, comment: comment.value });
    };
    approval.replaceChildren(
      h("b", {}, `Waiting for approval: ${waiting.name}`), waiting.prompt ? h("p", {}, waiting.prompt) : "",
      ...inputs, h("label", {}, "Comment"), comment,
      h("div", { class: "actions" },
        h("button", { class: "primary approve", type: "button", onclick: () => decide("approve") }, "Approve"),
        h("button", { class: "danger reject", type: "button", onclick: () => decide("reject") }, "Reject")),
    );
  }

  let shownLogOf = null;
  function drawLog() {
    const build = model.get("build") || {};
    if (build.id !== shownLogOf) atEnd = true; // another build: open it at its end
    shownLogOf = build.id;
    log.innerHTML = model.get("log"); // HTML the kernel made from the log: text escaped, colours as styles
    if (atEnd) log.scrollTop = log.scrollHeight;
  }

  // The force form: kept as the user fills it while the panel redraws, rebuilt when its fields change.
  let formShape = "";
  function drawForm() {
    const forms = model.get("forms") || {};
    const names = Object.keys(forms);
    const chosen = formBuilder.value;
    const shape = JSON.stringify(forms);
    if (shape === formShape) return;
    formShape = shape;
    formBuilder.replaceChildren(...names.map((name) => h("option", { value: name, selected: name === chosen }, name)));
    drawFields();
  }

  function drawFields() {
    const form = (model.get("forms") || {})[formBuilder.value];
    forceButton.disabled = !form;
    fields.replaceChildren(
      ...(form ? form.fields : []).flatMap((field) => {
        let input;
        if (field.type === "bool") input = h("input", { type: "checkbox", name: field.name, checked: !!field.default });
        else if (field.choices) input = h("select", { name: field.name }, field.choices.map((c) => h("option", { value: c, selected: c === field.default }, c)));
        else input = h("input", { type: "text", name: field.name, value: field.default ?? "", placeholder: field.required ? "required" : "" });
        return [h("label", {}, field.label), input];
      }),
    );
  }

  function drawMessage() {
    const said = model.get("message") || {};
    message.textContent = said.text || "";
    message.className = said.error ? "message error" : "message";
  }

  let sent = 0;
  function command(action, details) {
    model.set("command", { action, ...details, nonce: ++sent });
    model.save_changes();
  }

  function pick(id) {
    model.set("selected", id);
    model.set("follow", false);
    model.save_changes();
  }
  picker.addEventListener("change", () => pick(Number(picker.value)));
  follow.addEventListener("change", () => {
    model.set("follow", follow.checked);
    model.save_changes();
  });
  stop.addEventListener("click", () => command("stop", { build: (model.get("build") || {}).id }));
  formBuilder.addEventListener("change", drawFields);
  forceButton.addEventListener("click", () => {
    const values = {};
    for (const input of fields.querySelectorAll("[name]")) {
      values[input.name] = input.type === "checkbox" ? input.checked : input.value;
    }
    command("force", { builder: formBuilder.value, values });
  });

  const handlers = [
    ["change:overview", drawOverview],
    ["change:builds", drawPicker],
    ["change:selected", drawPicker],
    ["change:follow", drawPicker],
    ["change:build", drawBuild],
    ["change:log", drawLog],
    ["change:forms", drawForm],
    ["change:message", drawMessage],
  ];
  for (const [event, handler] of handlers) model.on(event, handler);
  drawOverview();
  drawPicker();
  drawBuild();
  drawLog();
  drawForm();
  drawMessage();
  return () => {
    for (const [event, handler] of handlers) model.off(event, handler);
  };
}

export default { render };
