// reelflow's operator UI. Plain JavaScript, no build step; it talks to the public HTTP API
// (the same one curl and the CLI use) and follows runs through their SSE streams.

const main = document.getElementById("main");
const notice = document.getElementById("notice");
const TOKEN_KEY = "reelflow.token";
const STATUSES = ["pending", "running", "succeeded", "failed", "cancelled"];
let leave = () => {}; // stops the current page's timers and streams
let current = 0; // which render is the live one: a slower, older one must not draw

/** Keep `stop` as the page's cleanup, unless a newer page has been rendered meanwhile. */
function adopt(gen, stop) {
  if (gen === current) leave = stop; else stop();
}

// ---- talking to the API ---------------------------------------------------------------

class Problem extends Error {
  constructor(status, body) {
    super(body?.detail || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

async function api(path, { method = "GET", body, headers = {} } = {}) {
  const token = localStorage.getItem(TOKEN_KEY);
  const sent = { Accept: "application/json", ...headers };
  if (token && method !== "GET") sent.Authorization = `Bearer ${token}`;
  // Every change is sent as JSON, a body-less one too: the API refuses form-shaped writes.
  if (method !== "GET") sent["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers: sent, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { detail: text }; }
  if (!response.ok) throw new Problem(response.status, data);
  return { status: response.status, data };
}

/** A problem, in words an operator can act on. */
function explain(error) {
  if (!(error instanceof Problem)) return `The API did not answer (${error.message}).`;
  const detail = error.body.detail || error.message;
  if (error.status === 401) return `Refused: this API needs its token (401). ${detail}`;
  if (error.status === 409) return `Not now: ${detail} (409${error.body.run_status ? `, the run is ${error.body.run_status}` : ""}).`;
  if (error.status === 503) return `The service is unavailable: ${detail} (503). Try again shortly.`;
  if (error.status === 429) return `Too many requests: ${detail} (429).`;
  return `${detail} (${error.status}).`;
}

let guarded = null; // does the API ask for a token? (its OpenAPI declares bearer security)
async function apiIsGuarded() {
  if (guarded === null) {
    try {
      const { data } = await api("/openapi.json");
      guarded = Boolean(data?.components?.securitySchemes);
    } catch { guarded = false; }
  }
  return guarded;
}

// ---- small helpers ----------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "style") el.style.cssText = v;  // CSSOM: allowed by the page's CSP
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const badge = (status) => h("span", { class: `badge s-${status}` }, status);
const link = (href, ...text) => h("a", { href, "data-link": true }, ...text);
const runPath = (id) => `/ui/runs/${id}`;
const stepPath = (id, key) => `/ui/runs/${id}/steps/${encodeURIComponent(key)}`;

function when(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleString(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
    second: "2-digit", timeZoneName: "short",
  });
}

function span(ms) {
  if (ms === null || ms === undefined) return "";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m} min ${Math.round(s % 60)} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

function duration(run) {
  if (!run.started_at) return "";
  const end = run.finished_at ? new Date(run.finished_at) : new Date();
  return span(end - new Date(run.started_at));
}

function say(text, bad = false) {
  notice.textContent = text;
  notice.className = bad ? "bad" : "";
}

function setPage(title, ...content) {
  document.title = `${title} · reelflow`;
  main.replaceChildren(...content);
  for (const a of document.querySelectorAll("nav a")) {
    const here = location.pathname === a.getAttribute("href")
      || (a.getAttribute("href") === "/ui" && location.pathname.startsWith("/ui/runs"));
    if (here) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
}

function every(ms, fn) {
  const timer = setInterval(fn, ms);
  return () => clearInterval(timer);
}

// ---- runs ---------------------------------------------------------------------------------

async function runsPage(gen, query) {
  const params = new URLSearchParams(query);
  const workflows = (await api("/workflows")).data.map((w) => w.name);
  if (gen !== current) return;
  const cursors = params.get("after") ? params.get("after").split(",") : [];
  const filters = h("form", { class: "filters", role: "search", onsubmit: (e) => {
    e.preventDefault();
    const next = new URLSearchParams();
    for (const [k, v] of new FormData(e.target)) if (v) next.set(k, v);
    go(`/ui?${next}`);
  } },
    h("div", {}, h("label", { for: "f-status" }, "Status"),
      h("select", { id: "f-status", name: "status" }, h("option", { value: "" }, "any"),
        STATUSES.map((s) => h("option", { value: s, selected: params.get("status") === s }, s)))),
    h("div", {}, h("label", { for: "f-workflow" }, "Workflow"),
      h("select", { id: "f-workflow", name: "workflow" }, h("option", { value: "" }, "any"),
        workflows.map((w) => h("option", { value: w, selected: params.get("workflow") === w }, w)))),
    h("div", {}, h("label", { for: "f-q" }, "Run id or idempotency key"),
      h("input", { id: "f-q", name: "q", value: params.get("q") || "", size: 28 })),
    h("button", { type: "submit" }, "Filter"),
  );
  const body = h("tbody");
  const table = h("div", { class: "table-wrap" }, h("table", {},
    h("caption", { class: "muted", style: "text-align:left" }, "Runs, newest first"),
    h("thead", {}, h("tr", {}, ["Run", "Workflow", "Status", "Created", "Duration", "Steps"]
      .map((c, i) => h("th", { scope: "col", class: i === 4 ? "hide-narrow" : null }, c)))),
    body));
  const pager = h("div", { class: "pager" });
  setPage("Runs", h("h1", {}, "Runs"), filters, table, pager);

  const api_query = new URLSearchParams();
  for (const k of ["status", "workflow", "q"]) if (params.get(k)) api_query.set(k, params.get(k));
  api_query.set("limit", "50");
  if (cursors.length) api_query.set("cursor", cursors[cursors.length - 1]);

  async function refresh() {
    const { data } = await api(`/runs?${api_query}`);
    body.replaceChildren(...data.items.map((run) => h("tr", { "data-run": run.id },
      h("td", { class: "mono" }, link(runPath(run.id), run.id.slice(0, 8))),
      h("td", {}, run.workflow),
      h("td", {}, badge(run.status)),
      h("td", {}, when(run.created_at)),
      h("td", { class: "hide-narrow" }, duration(run)),
      h("td", {}, `${run.steps_done ?? 0}/${run.steps_total ?? 0}`),
    )));
    if (!data.items.length) body.append(h("tr", {}, h("td", { colspan: 6 }, "No runs match.")));
    const back = new URLSearchParams(params);
    const forward = new URLSearchParams(params);
    if (cursors.length > 1) back.set("after", cursors.slice(0, -1).join(",")); else back.delete("after");
    if (data.next_cursor) forward.set("after", [...cursors, data.next_cursor].join(","));
    pager.replaceChildren(
      cursors.length ? link(`/ui?${back}`, "← Newer") : "",
      h("span", { class: "muted" }, `Page ${cursors.length + 1}`),
      data.next_cursor ? link(`/ui?${forward}`, "Older →") : "",
    );
  }
  await refresh();
  adopt(gen, every(2000, () => refresh().catch(() => {}))); // rows follow the runs as they move
}

// ---- a run --------------------------------------------------------------------------------

function aggregate(statuses) {
  for (const s of ["failed", "running", "retrying", "queued", "pending", "cancelled"]) {
    if (statuses.includes(s)) return s;
  }
  return statuses.length ? "succeeded" : "pending";
}

/** The steps laid out from the workflow: one column per depth, a map's items grouped. */
function graph(run, workflow, steps, opened) {
  const depth = {};
  const byName = Object.fromEntries(workflow.steps.map((s) => [s.name, s]));
  // What a step waits for: the steps it reads, and a map's source (`b.items` -> b).
  const after = (s) => [...s.reads, ...(s.mapped_over ? [s.mapped_over.split(".")[0]] : [])];
  const level = (name) => depth[name] ?? (depth[name] =
    1 + Math.max(-1, ...after(byName[name]).filter((r) => byName[r]).map(level)));
  workflow.steps.forEach((s) => level(s.name));
  const columns = [];
  for (const s of workflow.steps) (columns[depth[s.name]] ||= []).push(s);
  const current = steps.filter((s) => s.status !== "superseded");
  return h("div", { class: "graph", role: "list", "aria-label": "Steps" }, columns.map((col) =>
    h("div", { class: "col" }, col.map((info) => {
      const mine = current.filter((s) => s.step === info.name);
      if (!info.mapped_over) {
        const step = mine[0];
        const status = step?.status || "pending";
        return h("a", { class: `node s-${status}`, href: stepPath(run.id, info.name),
          "data-link": true, role: "listitem", "data-step": info.name },
          h("span", { class: "name" }, info.name), badge(status),
          step?.attempts > 1 ? h("span", { class: "muted" }, ` ${step.attempts} attempts`) : "");
      }
      const status = aggregate(mine.map((s) => s.status));
      const done = mine.filter((s) => s.status === "succeeded").length;
      return h("div", { class: `node s-${status}`, role: "listitem", "data-step": info.name },
        h("span", { class: "name" }, `${info.name} ×${mine.length}`), badge(status),
        h("span", { class: "muted" }, ` ${done}/${mine.length} done`),
        h("details", { open: opened.has(info.name),
          ontoggle: (e) => (e.target.open ? opened.add(info.name) : opened.delete(info.name)) },
          h("summary", {}, `Items of ${info.mapped_over}`),
          h("ul", {}, mine.sort((a, b) => a.item_index - b.item_index).map((s) => h("li", {},
            h("a", { href: stepPath(run.id, s.key), "data-link": true, class: `badge s-${s.status}`,
              "aria-label": `${s.key} ${s.status}` }, `${s.item_index}: ${s.status}`))))));
    }))));
}

function timeline(run, attempts) {
  const start = Math.min(...attempts.map((a) => new Date(a.started_at)));
  const end = Math.max(...attempts.map((a) => new Date(a.finished_at || Date.now())));
  const total = Math.max(1, end - start);
  return h("div", { class: "table-wrap" }, h("table", {},
    h("thead", {}, h("tr", {}, ["Step", "Attempt", "Status", "Worker", "Waited", "Started",
      "Took", "When"].map((c, i) => h("th", { scope: "col", class: [3, 5].includes(i) ? "hide-narrow" : null }, c)))),
    h("tbody", {}, attempts.map((a) => {
      const left = ((new Date(a.started_at) - start) / total) * 100;
      const width = (((a.finished_at ? new Date(a.finished_at) : Date.now()) - new Date(a.started_at)) / total) * 100;
      return h("tr", { "data-attempt": `${a.step_key}#${a.attempt}` },
        h("td", {}, link(stepPath(run.id, a.step_key), a.step_key)),
        h("td", {}, a.attempt), h("td", {}, badge(a.status)),
        h("td", { class: "hide-narrow mono" }, a.worker_hostname || ""),
        h("td", {}, span(a.waited_ms)), h("td", { class: "hide-narrow" }, when(a.started_at)),
        h("td", {}, span(a.duration_ms)),
        h("td", { class: "bar-cell" }, h("div", { class: "bar", "aria-hidden": "true" },
          h("span", { class: `s-${a.status}`, style: `left:${left}%;width:${width}%;background:currentColor` }))));
    }))));
}

async function runPage(gen, id) {
  const workflows = (await api("/workflows")).data;
  if (gen !== current) return;
  const actions = h("div", { class: "actions" });
  const body = h("div");
  const opened = new Set(); // the maps whose items the operator opened stay open on refresh
  setPage(`Run ${id.slice(0, 8)}`, h("h1", {}, "Run ", h("span", { class: "mono" }, id)), actions, body);

  async function refresh() {
    const [{ data: run }, { data: attempts }, { data: history }] = await Promise.all([
      api(`/runs/${id}`), api(`/runs/${id}/attempts`), api(`/runs/${id}/history`),
    ]);
    const workflow = workflows.find((w) => w.name === run.workflow);
    actions.replaceChildren(
      h("button", { type: "button", onclick: () => resume(run), disabled: !["failed", "cancelled"].includes(run.status) }, "Resume run"),
      h("button", { type: "button", class: "danger", onclick: () => cancel(run), disabled: !["pending", "running"].includes(run.status) }, "Cancel run"),
    );
    const composed = run.steps.find((s) => s.key === "compose_video" && s.status === "succeeded");
    body.replaceChildren(
      composed ? media(id, artifactsOf(composed.output)) : "",
      h("dl", { class: "meta" },
        h("dt", {}, "Status"), h("dd", { id: "run-status" }, badge(run.status)),
        h("dt", {}, "Workflow"), h("dd", {}, `${run.workflow} (version ${run.workflow_version})`),
        h("dt", {}, "Steps done"), h("dd", {}, `${run.steps_done}/${run.steps_total}`),
        h("dt", {}, "Created"), h("dd", {}, when(run.created_at)),
        h("dt", {}, "Duration"), h("dd", {}, duration(run)),
        h("dt", {}, "Generation"), h("dd", {}, run.generation),
        run.idempotency_key ? [h("dt", {}, "Idempotency key"), h("dd", { class: "mono" }, run.idempotency_key)] : [],
        run.error ? [h("dt", {}, "Error"), h("dd", { class: "error-text" }, `${run.error.step ? `${run.error.step}: ` : ""}${run.error.type}: ${run.error.message}`)] : []),
      h("h2", {}, "Steps"), workflow ? graph(run, workflow, run.steps, opened) : h("p", {}, "Unknown workflow."),
      h("h2", {}, "Attempts"), attempts.length ? timeline(run, attempts) : h("p", { class: "muted" }, "No attempt yet."),
      h("h2", {}, "Params"), h("pre", {}, JSON.stringify(run.params, null, 2)),
      h("h2", {}, "Events"), h("ul", {}, history.map((e) => h("li", {},
        h("strong", {}, e.kind), ` by ${e.actor}, ${when(e.created_at)}`,
        Object.keys(e.detail || {}).length && e.kind !== "created" ? h("span", { class: "muted mono" }, ` ${JSON.stringify(e.detail)}`) : ""))),
    );
  }
  await refresh();
  adopt(gen, follow(id, refresh));
}

const FINISHED = new Set(["succeeded", "failed", "cancelled"]);

/** Re-read the page when the run's SSE stream says something changed (debounced); once
 *  the run has finished, stop listening (an action on it renders the page again). */
function follow(id, refresh) {
  const source = new EventSource(`/runs/${id}/events`);
  let pending = null;
  const later = () => {
    clearTimeout(pending);
    pending = setTimeout(() => refresh().catch(() => {}), 150);
  };
  source.addEventListener("step", later);
  source.addEventListener("run", (event) => {
    later();
    try { if (FINISHED.has(JSON.parse(event.data).status)) source.close(); } catch { /* keep it */ }
  });
  return () => { clearTimeout(pending); source.close(); };
}

// ---- actions --------------------------------------------------------------------------------

function ask(title, ...content) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-body").replaceChildren(...content);
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
    document.getElementById("confirm-ok").focus();
  });
}

function describe(plan) {
  const kept = Object.values(plan.skip).filter((why) => why.startsWith("succeeded")).length;
  return [
    h("p", {}, h("strong", {}, "Will run: "), plan.run.length ? plan.run.join(", ") : "nothing"),
    h("p", {}, `Keeps ${kept} succeeded step${kept === 1 ? "" : "s"}.`),
  ];
}

async function act(label, path, dry) {
  try {
    let plan = null;
    if (dry) plan = (await api(`${path}?dry_run=true`, { method: "POST" })).data;
    const ok = await ask(label, ...(plan ? describe(plan) : [h("p", {}, "Steps running now stop; steps not started will not run.")]));
    if (!ok) return;
    await api(path, { method: "POST" });
    say(`${label}: accepted.`);
    await render(); // follow the run again: its stream had closed when it finished
  } catch (error) {
    say(explain(error), true);
    if (error instanceof Problem && error.status === 401) askToken();
  }
}

const resume = (run) => act("Resume run", `/runs/${run.id}/resume`, true);
const cancel = (run) => act("Cancel run", `/runs/${run.id}/cancel`, false);
const retry = (id, key) => act(`Retry ${key}`, `/runs/${id}/steps/${encodeURIComponent(key)}/retry`, true);

function askToken() {
  const dialog = document.getElementById("token");
  const input = document.getElementById("token-input");
  input.value = "";
  dialog.addEventListener("close", () => {
    if (dialog.returnValue === "ok" && input.value) {
      localStorage.setItem(TOKEN_KEY, input.value);
      say("Token saved. Try the action again.");
    }
  }, { once: true });
  dialog.returnValue = "";
  dialog.showModal();
  input.focus();
}

// ---- a step ---------------------------------------------------------------------------------

function artifactsOf(value, found = []) {
  if (value && typeof value === "object") {
    if (typeof value.sha256 === "string" && typeof value.size === "number" && value.path) found.push(value);
    else Object.values(value).forEach((v) => artifactsOf(v, found));
  }
  return found;
}

function artifactUrl(runId, artifact) {
  const key = artifact.key || "";
  const prefix = `${runId}/`;
  return key.startsWith(prefix) ? `/runs/${runId}/artifacts/${key.slice(prefix.length).split("/").map(encodeURIComponent).join("/")}` : null;
}

const mediaShown = new Map(); // url + sha256 -> element: a refresh keeps a playing video

/** The videos (playable) and images (shown) among a step's artifacts. */
function media(runId, artifacts) {
  return h("div", { class: "media" }, artifacts.map((a) => {
    const url = artifactUrl(runId, a);
    if (!url) return "";
    const id = `${url}#${a.sha256}`;
    if (!mediaShown.has(id)) {
      if (a.path.endsWith(".mp4")) {
        mediaShown.set(id, h("video", { src: url, controls: true, preload: "metadata", "aria-label": "The video" }));
      } else if (a.path.endsWith(".png")) {
        mediaShown.set(id, h("img", { src: url, alt: "Thumbnail of the video" }));
      } else return "";
    }
    return mediaShown.get(id);
  }));
}

async function stepPage(gen, id, key) {
  const actions = h("div", { class: "actions" });
  const body = h("div");
  setPage(`${key} · run ${id.slice(0, 8)}`,
    h("p", {}, link(runPath(id), `← Run ${id.slice(0, 8)}`)),
    h("h1", {}, "Step ", h("span", { class: "mono" }, key)), actions, body);

  async function refresh() {
    const [{ data: run }, { data: attempts }] = await Promise.all([
      api(`/runs/${id}`), api(`/runs/${id}/steps/${encodeURIComponent(key)}/attempts`),
    ]);
    const step = run.steps.find((s) => s.key === key);
    actions.replaceChildren(h("button", { type: "button", onclick: () => retry(id, key),
      disabled: ["pending", "running"].includes(run.status) }, "Retry step (and what follows)"));
    const artifacts = artifactsOf(step?.output);
    body.replaceChildren(
      h("dl", { class: "meta" },
        h("dt", {}, "Status"), h("dd", { id: "step-status" }, badge(step?.status || "pending")),
        h("dt", {}, "Run"), h("dd", {}, badge(run.status)),
        h("dt", {}, "Queue"), h("dd", {}, step?.queue || ""),
        h("dt", {}, "Attempts"), h("dd", {}, `${step?.attempts ?? 0} of at most ${step?.max_attempts ?? "?"}`)),
      h("h2", {}, "Attempts"),
      h("div", { class: "table-wrap" }, h("table", { id: "attempts" },
        h("thead", {}, h("tr", {}, ["#", "Status", "Worker", "Started", "Took", "Error"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, attempts.map((a) => h("tr", {},
          h("td", {}, a.attempt), h("td", {}, badge(a.status)), h("td", { class: "mono" }, a.worker_hostname || ""),
          h("td", {}, when(a.started_at)), h("td", {}, span(a.duration_ms)),
          h("td", {}, a.error_type ? [h("strong", { class: "error-text" }, a.error_type), `: ${a.error_message || ""}`,
            a.traceback ? h("details", {}, h("summary", {}, "Traceback"), h("pre", { class: "traceback" }, a.traceback)) : ""] : "")))))),
      artifacts.length ? [h("h2", {}, "Artifacts"), h("ul", {}, artifacts.map((a) => {
        const url = artifactUrl(id, a);
        return h("li", {}, url ? h("a", { href: url }, a.key.split("/").pop()) : a.path,
          h("span", { class: "muted" }, ` ${a.size.toLocaleString()} bytes, sha256 `), h("code", {}, a.sha256.slice(0, 16) + "…"));
      })), media(id, artifacts)] : "",
      h("h2", {}, "Output"), h("pre", { id: "output" }, step?.output ? JSON.stringify(step.output, null, 2) : "none yet"),
    );
  }
  await refresh();
  adopt(gen, follow(id, refresh));
}

// ---- start a run ------------------------------------------------------------------------------

function fieldFor(name, given, required) {
  const id = `p-${name}`;
  // An optional field (`int | None`) is anyOf [{type: integer, ...}, {type: null}].
  const schema = { ...((given.anyOf || []).find((b) => b.type !== "null") || {}), ...given };
  const type = schema.type;
  const hintParts = [schema.description, schema.minimum !== undefined ? `min ${schema.minimum}` : "",
    schema.maximum !== undefined ? `max ${schema.maximum}` : ""].filter(Boolean);
  let input;
  if (schema.enum) {
    input = h("select", { id, name }, schema.enum.map((v) => h("option", { value: v, selected: v === schema.default }, v)));
  } else if (type === "boolean") {
    input = h("input", { id, name, type: "checkbox", checked: schema.default === true });
  } else {
    const numeric = type === "integer" || type === "number";
    input = h("input", { id, name, type: numeric ? "number" : "text", value: schema.default ?? "",
      min: schema.minimum, max: schema.maximum, step: type === "integer" ? 1 : numeric ? "any" : null,
      required: required && schema.default === undefined });
  }
  input.dataset.type = type || "string";
  return h("div", { class: "field" }, h("label", { for: id, class: "mono" }, name), input,
    hintParts.length ? h("div", { class: "hint", id: `${id}-hint` }, hintParts.join(" · ")) : "",
    h("div", { class: "error-text", id: `${id}-error`, role: "alert" }));
}

async function newRunPage(gen, query) {
  const workflows = (await api("/workflows")).data;
  if (gen !== current) return;
  const chosen = new URLSearchParams(query).get("workflow") || workflows[0]?.name;
  const workflow = workflows.find((w) => w.name === chosen) || workflows[0];
  const props = workflow.params_schema.properties || {};
  const required = new Set(workflow.params_schema.required || []);
  const form = h("form", { id: "new-run", novalidate: true, onsubmit: async (e) => {
    e.preventDefault();
    const params = {};
    for (const el of form.querySelectorAll("[name]")) {
      if (["idempotency_key", "workflow", "faults"].includes(el.name)) continue;
      if (el.dataset.type === "boolean") params[el.name] = el.checked;
      else if (el.value === "") continue;
      else if (el.dataset.type === "integer") params[el.name] = Number.parseInt(el.value, 10);
      else if (el.dataset.type === "number") params[el.name] = Number(el.value);
      else params[el.name] = el.value;
    }
    form.querySelectorAll(".error-text").forEach((el) => { el.textContent = ""; });
    const key = form.querySelector("#idempotency-key").value.trim();
    const body = { workflow: workflow.name, params };
    const faults = form.querySelector("#faults").value.trim();
    if (faults) {
      body.faults = {};
      for (const part of faults.split(",")) {
        const [step, count] = part.split("=").map((x) => x.trim());
        body.faults[step] = Number.parseInt(count || "1", 10);
      }
    }
    try {
      const { data } = await api("/runs", { method: "POST", body,
        headers: key ? { "Idempotency-Key": key } : {} });
      go(runPath(data.id));
    } catch (error) {
      say(explain(error), true);
      for (const err of error.body?.errors || []) {
        const name = String(err.field || "").replace(/^params\./, "");
        const slot = form.querySelector(`#p-${CSS.escape(name)}-error`);
        if (slot) slot.textContent = err.message;
      }
    }
  } },
    h("div", { class: "field" }, h("label", { for: "workflow" }, "Workflow"),
      h("select", { id: "workflow", name: "workflow", onchange: (e) => go(`/ui/new?workflow=${e.target.value}`) },
        workflows.map((w) => h("option", { value: w.name, selected: w.name === workflow.name }, w.name))),
      h("div", { class: "hint" }, workflow.description)),
    Object.entries(props).map(([name, schema]) => fieldFor(name, schema, required.has(name))),
    h("div", { class: "field" }, h("label", { for: "idempotency-key" }, "Idempotency key (optional)"),
      h("input", { id: "idempotency-key", name: "idempotency_key", size: 40, maxlength: 200 }),
      h("div", { class: "hint" }, "The same key and params again returns the same run instead of a new one.")),
    h("details", { class: "field" }, h("summary", {}, "Testing aids"),
      h("label", { for: "faults" }, "Inject failures"),
      h("input", { id: "faults", name: "faults", size: 40, placeholder: "c[2]=1, b=2" }),
      h("div", { class: "hint" }, "step key = how many attempts fail; honoured only where ALLOW_FAULT_INJECTION is on"),
      h("div", { class: "error-text", id: "p-faults-error", role: "alert" })),
    h("button", { type: "submit" }, "Start run"));
  setPage("Start a run", h("h1", {}, "Start a run"), form);
}

// ---- workers --------------------------------------------------------------------------------

async function workersPage(gen) {
  const body = h("div");
  setPage("Workers", h("h1", {}, "Workers"), body);
  async function refresh() {
    const { data } = await api("/workers");
    body.replaceChildren(
      h("h2", {}, "Queues"),
      h("table", {}, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Queue"), h("th", { scope: "col" }, "Waiting"))),
        h("tbody", {}, Object.entries(data.queues).map(([q, n]) => h("tr", {}, h("td", {}, q), h("td", {}, n ?? "broker did not answer"))))),
      h("h2", {}, `Online (${data.workers.length})`),
      data.workers.length ? h("div", { class: "table-wrap" }, h("table", {},
        h("thead", {}, h("tr", {}, ["Worker", "Queues", "Running", "Last seen"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, data.workers.map((w) => h("tr", {},
          h("td", { class: "mono" }, `${w.hostname} (pid ${w.pid})`), h("td", {}, w.queues.join(", ")),
          h("td", {}, w.running.length ? h("ul", {}, w.running.map((s) => h("li", {},
            link(stepPath(s.run_id, s.key), s.key), ` of run `, link(runPath(s.run_id), s.run_id.slice(0, 8)),
            ` (attempt ${s.attempt})`))) : h("span", { class: "muted" }, "idle")),
          h("td", {}, when(w.last_seen))))))) : h("p", {}, "No worker is online."),
    );
  }
  await refresh();
  adopt(gen, every(3000, () => refresh().catch(() => {})));
}

// ---- routing ----------------------------------------------------------------------------------

async function render() {
  leave();
  leave = () => {};
  mediaShown.clear();
  const gen = ++current;
  const path = location.pathname.replace(/\/+$/, "") || "/ui";
  let m;
  try {
    if (path === "/ui") await runsPage(gen, location.search);
    else if (path === "/ui/new") await newRunPage(gen, location.search);
    else if (path === "/ui/workers") await workersPage(gen);
    else if ((m = path.match(/^\/ui\/runs\/([0-9a-f-]{36})\/steps\/(.+)$/))) await stepPage(gen, m[1], decodeURIComponent(m[2]));
    else if ((m = path.match(/^\/ui\/runs\/([0-9a-f-]{36})$/))) await runPage(gen, m[1]);
    else setPage("Not found", h("h1", {}, "Not found"), h("p", {}, link("/ui", "All runs")));
  } catch (error) {
    setPage("Error", h("h1", {}, "Could not load this page"), h("p", { class: "error-text", role: "alert" }, explain(error)));
  }
}

function go(href) {
  history.pushState(null, "", href);
  say("");
  render().then(() => main.focus({ preventScroll: true }));
}

document.addEventListener("click", (e) => {
  const a = e.target.closest("a[data-link]");
  if (!a || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
  e.preventDefault();
  go(a.getAttribute("href"));
});
window.addEventListener("popstate", render);
document.getElementById("token-button").addEventListener("click", askToken);
apiIsGuarded().then((yes) => { document.getElementById("token-button").hidden = !yes; });
render();
