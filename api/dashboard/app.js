// Baton dashboard: a hash-routed page over /api/v1. No framework, no build step.
"use strict";

const REFRESH_MS = 2000;
const STATUSES = ["running", "stuck", "completed", "failed", "cancelled"];
let refreshTimer = null;
let renderSeq = 0;

function token() {
  return localStorage.getItem("baton-token") || "";
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (token()) headers.Authorization = "Bearer " + token();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch("/api/v1" + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  const data = text ? JSON.parse(text) : null;
  if (res.status === 401) askForToken(data && data.detail);
  if (!res.ok) throw new ApiError(res.status, (data && data.detail) || res.statusText);
  return data;
}

function askForToken(reason) {
  document.getElementById("token-bar").hidden = false;
  document.getElementById("token-reason").textContent = reason || "";
}

function notify(message, isError) {
  const n = document.getElementById("notice");
  n.textContent = message;
  n.className = "notice" + (isError ? " error" : "");
  n.hidden = false;
  clearTimeout(notify.timer);
  notify.timer = setTimeout(() => (n.hidden = true), 6000);
}

function time(ms) {
  return ms ? new Date(ms).toLocaleString() : "";
}

function json(value) {
  return el("pre", { class: "json" }, JSON.stringify(value, null, 2));
}

function statusBadge(status) {
  return el("span", { class: "badge " + status, "data-status": status }, status);
}

function link(href, text, attrs) {
  return el("a", Object.assign({ href }, attrs || {}), text);
}

function query() {
  const hash = location.hash.slice(1);
  const [path, q] = hash.split("?");
  return { path: path || "/", params: new URLSearchParams(q || "") };
}

function setQuery(params) {
  const { path } = query();
  location.hash = path + (params.toString() ? "?" + params.toString() : "");
}

// ---- instances ---------------------------------------------------------------------------

async function renderInstances(view, params) {
  const [counts, page] = await Promise.all([
    api("GET", "/workflows"),
    api("GET", "/instances?" + searchParams(params).toString()),
  ]);
  const table = el(
    "table",
    { class: "counts", "data-testid": "workflow-counts" },
    el("thead", {}, el("tr", {}, el("th", {}, "Workflow"), STATUSES.map((s) => el("th", {}, s)))),
    el(
      "tbody",
      {},
      counts.map((c) =>
        el(
          "tr",
          {},
          el("td", {}, link(filterHref(params, { workflow: c.workflow, status: null }), c.workflow)),
          STATUSES.map((s) =>
            el(
              "td",
              { class: c[s] > 0 ? "count " + s : "count" },
              link(filterHref(params, { workflow: c.workflow, status: s }), String(c[s]), {
                "data-testid": `count-${c.workflow}-${s}`,
              }),
            ),
          ),
        ),
      ),
    ),
  );
  const filters = el(
    "form",
    {
      class: "filters",
      onsubmit: (e) => {
        e.preventDefault();
        const f = new FormData(e.target);
        const next = new URLSearchParams();
        for (const [k, v] of f.entries()) if (v) next.set(k, v);
        setQuery(next);
      },
    },
    el("label", {}, "Workflow ", el("input", { name: "workflow", value: params.get("workflow") || "" })),
    el(
      "label",
      {},
      "Status ",
      el(
        "select",
        { name: "status", "data-testid": "status-filter" },
        el("option", { value: "" }, "any"),
        STATUSES.map((s) => el("option", { value: s, selected: params.get("status") === s }, s)),
      ),
    ),
    el("label", {}, "Tag ", el("input", { name: "tag", value: params.get("tag") || "" })),
    el("button", { type: "submit" }, "Filter"),
    link("#/", "clear"),
  );
  const rows = page.instances.map((i) =>
    el(
      "tr",
      { "data-testid": "instance-row", "data-id": i.id },
      el("td", {}, link("#/instances/" + i.id, i.id, { class: "mono" })),
      el("td", {}, i.workflow),
      el("td", {}, statusBadge(i.status)),
      el("td", {}, time(i.startedAt)),
      el("td", {}, time(i.endedAt)),
      el("td", {}, i.tags.join(", ")),
    ),
  );
  const list = el(
    "table",
    { class: "instances" },
    el(
      "thead",
      {},
      el("tr", {}, ["Instance", "Workflow", "Status", "Started", "Ended", "Tags"].map((h) => el("th", {}, h))),
    ),
    el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 6, class: "empty" }, "No instances match."))),
  );
  const more = page.nextCursor
    ? link(filterHref(params, { cursor: page.nextCursor }), "Older instances →", { class: "more" })
    : null;
  view.replaceChildren(...[el("h1", {}, "Workflows"), table, el("h2", {}, "Instances"), filters, list, more].filter(Boolean));
}

function searchParams(params) {
  const out = new URLSearchParams();
  for (const k of ["workflow", "status", "tag", "cursor"]) if (params.get(k)) out.set(k, params.get(k));
  out.set("limit", "50");
  return out;
}

function filterHref(params, changes) {
  const next = new URLSearchParams(params);
  next.delete("cursor");
  for (const [k, v] of Object.entries(changes)) {
    if (v === null) next.delete(k);
    else next.set(k, v);
  }
  return "#/?" + next.toString();
}

// ---- one instance ------------------------------------------------------------------------

async function act(label, method, path, body) {
  try {
    await api(method, path, body);
    notify(label + ": sent");
    scheduleRefresh(300);
  } catch (e) {
    notify(label + " failed: " + e.message, true);
  }
}

function failureView(failure, title) {
  return el(
    "section",
    { class: "failure", "data-testid": "failure" },
    el("h3", {}, title),
    el("p", {}, el("strong", {}, failure.kind), " ", failure.message),
    failure.error !== null && failure.error !== undefined ? json(failure.error) : null,
    failure.previousAttempts.length
      ? el(
          "ol",
          { class: "chain" },
          failure.previousAttempts.map((a) =>
            el("li", {}, `attempt ${a.attempt} at ${time(a.at)}: ${a.kind}: ${a.message}`),
          ),
        )
      : null,
  );
}

async function renderInstance(view, id) {
  const [detail, history] = await Promise.all([
    api("GET", "/instances/" + id),
    api("GET", "/instances/" + id + "/history?limit=1000"),
  ]);
  const base = "/instances/" + id;
  const running = detail.status === "running" || detail.status === "stuck";
  const buttons = el(
    "div",
    { class: "actions" },
    el("button", {
      "data-testid": "cancel",
      disabled: !running,
      onclick: () => confirm("Cancel this instance?") && act("Cancel", "POST", base + "/cancel", { reason: "cancelled from the dashboard" }),
      text: "Cancel",
    }),
    el("button", {
      "data-testid": "retry-workflow-task",
      disabled: detail.status !== "stuck",
      onclick: () => act("Retry workflow task", "POST", base + "/retry-workflow-task"),
      text: "Retry workflow task",
    }),
    el("button", {
      "data-testid": "retry-tasks",
      disabled: detail.status !== "failed",
      onclick: () => act("Retry failed tasks", "POST", base + "/retry-tasks", {}),
      text: "Retry failed tasks",
    }),
    el("button", {
      "data-testid": "complete-timers",
      disabled: !running || !detail.pending.some((p) => p.kind === "timer"),
      onclick: () => act("Complete timers", "POST", base + "/complete-timers"),
      text: "Complete timers",
    }),
  );
  const facts = el(
    "dl",
    { class: "facts" },
    el("dt", {}, "Workflow"),
    el("dd", {}, detail.workflow + (detail.workflowVersion !== null ? " v" + detail.workflowVersion : "")),
    el("dt", {}, "Status"),
    el("dd", { "data-testid": "instance-status" }, statusBadge(detail.status)),
    el("dt", {}, "Started"),
    el("dd", {}, time(detail.startedAt)),
    el("dt", {}, "Ended"),
    el("dd", {}, time(detail.endedAt) || "—"),
    el("dt", {}, "Tags"),
    el("dd", {}, detail.tags.join(", ") || "—"),
    el("dt", {}, "Workflow tasks"),
    el("dd", {}, String(detail.workflowTasks)),
    detail.parent ? [el("dt", {}, "Parent"), el("dd", {}, link("#/instances/" + detail.parent, detail.parent))] : null,
  );
  const parts = [el("h1", {}, "Instance ", el("span", { class: "mono" }, detail.id)), facts, buttons];
  if (detail.workflowTaskFailure) parts.push(failureView(detail.workflowTaskFailure, "Workflow task failed (waiting for a fix and a retry)"));
  if (detail.outcome && detail.outcome.failure) parts.push(failureView(detail.outcome.failure, "Failed"));
  if (detail.outcome && detail.outcome.status === "completed")
    parts.push(el("section", { class: "output" }, el("h3", {}, "Output"), json(detail.outcome.output)));
  if (detail.outcome && detail.outcome.reason)
    parts.push(el("section", {}, el("h3", {}, "Cancelled"), el("p", {}, detail.outcome.reason)));
  if (detail.input !== null) parts.push(el("section", {}, el("h3", {}, "Input"), json(detail.input)));
  if (detail.pending.length)
    parts.push(
      el(
        "section",
        {},
        el("h3", {}, "Pending"),
        el("ul", {}, detail.pending.map((p) => el("li", {}, `#${p.position} ${p.kind}: ${p.description}`))),
      ),
    );
  parts.push(el("h2", {}, `History (${history.total} entries)`), timeline(history.entries));
  view.replaceChildren(...parts);
}

function describe(entry) {
  const d = entry.detail;
  switch (entry.kind) {
    case "WorkflowTaskStarted":
      return { cls: "task", text: `workflow task ${d.index} at ${time(d.at)}` };
    case "CommandRecorded": {
      const spec = d.command.spec;
      const kind = Object.keys(spec)[0];
      const s = spec[kind];
      const pos = `#${d.command.position} `;
      if (kind === "ServiceTask" || kind === "ServiceTaskWithOptions")
        return { cls: "command", text: pos + `call ${s.service}.${s.method}`, payload: s.args };
      if (kind === "Timer") return { cls: "timer", text: pos + `timer until ${time(s.due)}` };
      if (kind === "ChildWorkflow")
        return { cls: "child", text: pos + `child workflow ${s.workflow}`, child: d.childId, payload: s.input };
      if (kind === "Receive") return { cls: "signal", text: pos + `receive on ${s.channel}` };
      return { cls: "command", text: pos + kind, payload: s };
    }
    case "ResultDelivered": {
      const kind = Object.keys(d.outcome)[0];
      const o = d.outcome[kind];
      if (kind === "Completed") return { cls: "result", text: "result", payload: o };
      const retries = o.previousAttempts && o.previousAttempts.length ? ` after ${o.previousAttempts.length + 1} attempts` : "";
      return { cls: "failed", text: `failed${retries}: ${o.kind}: ${o.message}`, chain: o.previousAttempts };
    }
    case "MethodCalled":
      return { cls: "signal", text: `method ${d.method} called`, payload: d.args };
    default:
      return { cls: "command", text: entry.kind, payload: d };
  }
}

function timeline(entries) {
  return el(
    "ol",
    { class: "timeline", "data-testid": "timeline" },
    entries.map((entry) => {
      const item = describe(entry);
      return el(
        "li",
        { class: item.cls, "data-kind": entry.kind },
        el("span", { class: "index" }, String(entry.index)),
        el("span", { class: "what" }, item.text),
        item.child ? [" ", link("#/instances/" + item.child, "open child")] : null,
        item.chain && item.chain.length
          ? el("ol", { class: "chain" }, item.chain.map((a) => el("li", {}, `attempt ${a.attempt}: ${a.kind}: ${a.message}`)))
          : null,
        item.payload !== undefined ? el("details", {}, el("summary", {}, "payload"), json(item.payload)) : null,
      );
    }),
  );
}

// ---- dead letters ------------------------------------------------------------------------

async function renderDeadLetters(view, params) {
  const topics = await api("GET", "/dead-letters");
  const selected = params.get("topic") || (topics[0] && topics[0].topic);
  const parts = [el("h1", {}, "Dead letters")];
  if (!topics.length) {
    parts.push(el("p", { class: "empty", "data-testid": "no-dead-letters" }, "No dead letters."));
    view.replaceChildren(...parts);
    return;
  }
  parts.push(
    el(
      "ul",
      { class: "topics" },
      topics.map((t) =>
        el("li", {}, link("#/dead-letters?topic=" + encodeURIComponent(t.topic), `${t.topic} (${t.count})`, {
          class: t.topic === selected ? "selected" : null,
        })),
      ),
    ),
  );
  const page = await api("GET", "/dead-letters/" + encodeURIComponent(selected) + "?limit=100");
  parts.push(
    el("h2", {}, selected),
    el("button", {
      "data-testid": "redrive-all",
      onclick: () => act("Redrive all", "POST", "/dead-letters/" + encodeURIComponent(selected) + "/redrive"),
      text: "Redrive all",
    }),
    el(
      "ul",
      { class: "letters" },
      page.letters.map((l) =>
        el(
          "li",
          { "data-testid": "dead-letter" },
          el("p", {}, el("strong", {}, l.reason), ` — collected ${time(l.deadAt)}`, l.redeliveries !== null ? `, after ${l.redeliveries} redeliveries` : ""),
          el("p", { class: "mono" }, "key " + l.key + " · id " + l.id),
          l.body ? json(l.body) : el("p", { class: "error" }, "does not decode: " + l.bodyError),
          el("button", {
            onclick: () => act("Redrive", "POST", `/dead-letters/${encodeURIComponent(l.topic)}/${encodeURIComponent(l.id)}/redrive`),
            text: "Redrive",
          }),
          el("button", {
            onclick: () => confirm("Discard this letter?") && act("Discard", "DELETE", `/dead-letters/${encodeURIComponent(l.topic)}/${encodeURIComponent(l.id)}`),
            text: "Discard",
          }),
        ),
      ),
    ),
  );
  view.replaceChildren(...parts);
}

// ---- routing and refresh -----------------------------------------------------------------

async function render() {
  const seq = ++renderSeq;
  const view = document.getElementById("view");
  const { path, params } = query();
  for (const a of document.querySelectorAll("[data-nav]"))
    a.classList.toggle("active", path.startsWith("/dead-letters") === (a.dataset.nav === "dead-letters"));
  const scratch = document.createElement("div");
  try {
    if (path.startsWith("/instances/")) await renderInstance(scratch, decodeURIComponent(path.slice("/instances/".length)));
    else if (path.startsWith("/dead-letters")) await renderDeadLetters(scratch, params);
    else await renderInstances(scratch, params);
    // A newer render started meanwhile: drop this one. Otherwise keep open details open.
    if (seq !== renderSeq) return;
    const open = [...view.querySelectorAll("details[open]")].map((d) => d.parentElement && d.parentElement.dataset.kind + ":" + [...d.parentElement.parentElement.children].indexOf(d.parentElement));
    view.replaceChildren(...scratch.childNodes);
    for (const d of view.querySelectorAll("details")) {
      const key = d.parentElement.dataset.kind + ":" + [...d.parentElement.parentElement.children].indexOf(d.parentElement);
      if (open.includes(key)) d.open = true;
    }
    document.getElementById("live").classList.remove("stale");
  } catch (e) {
    if (seq !== renderSeq) return;
    document.getElementById("live").classList.add("stale");
    if (e.status !== 401) view.replaceChildren(el("p", { class: "error", "data-testid": "error" }, e.message));
  }
  scheduleRefresh(REFRESH_MS);
}

function scheduleRefresh(ms) {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(render, ms);
}

document.getElementById("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  localStorage.setItem("baton-token", document.getElementById("token-input").value.trim());
  document.getElementById("token-bar").hidden = true;
  render();
});
window.addEventListener("hashchange", render);
render();
