// The runs list (/ui): filters, the table (refreshed every 2 s: what each run is, its
// status and progress) and cursor paging.

import { api } from "../api.js";
import { badge, duration, every, h, link, runPath, setPage, stepPath, when } from "../dom.js";
import { adopt, go, live } from "../nav.js";
import { states } from "../states.js";

export async function runsPage(gen, query) {
  const params = new URLSearchParams(query);
  const [{ data: listed }, known] = await Promise.all([api("/workflows"), states()]);
  if (!live(gen)) return;
  const workflows = listed.map((w) => w.name);
  const cursors = params.get("after") ? params.get("after").split(",") : [];
  const filters = h("form", { class: "filters", role: "search", onsubmit: (e) => {
    e.preventDefault();
    const next = new URLSearchParams();
    for (const [k, v] of new FormData(e.target)) if (v) next.set(k, v);
    go(`/ui?${next}`);
  } },
    h("div", {}, h("label", { for: "f-status" }, "Status"),
      h("select", { id: "f-status", name: "status" }, h("option", { value: "" }, "any"),
        known.run.statuses.map((s) => h("option", { value: s, selected: params.get("status") === s }, s)))),
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
    h("thead", {}, h("tr", {}, ["Run", "What", "Workflow", "Status", "Created", "Duration", "Steps"]
      .map((c, i) => h("th", { scope: "col", class: i === 5 ? "hide-narrow" : null }, c)))),
    body));
  const pager = h("div", { class: "pager" });
  setPage("Runs", h("h1", {}, "Runs"), filters, table, pager);

  const api_query = new URLSearchParams();
  for (const k of ["status", "workflow", "q"]) if (params.get(k)) api_query.set(k, params.get(k));
  api_query.set("limit", "50");
  if (cursors.length) api_query.set("cursor", cursors[cursors.length - 1]);

  const thumbnails = new Map(); // url -> <img>: a refresh keeps them, loads none again

  async function refresh() {
    const { data } = await api(`/runs?${api_query}`);
    body.replaceChildren(...data.items.map((run) => h("tr", { "data-run": run.id },
      h("td", { class: "mono" }, link(runPath(run.id), run.id.slice(0, 8))),
      what(run, thumbnails),
      h("td", {}, run.workflow),
      h("td", {}, badge(run.status)),
      h("td", {}, when(run.created_at)),
      h("td", { class: "hide-narrow" }, duration(run)),
      h("td", {}, `${run.steps_done ?? 0}/${run.steps_total ?? 0}`),
    )));
    if (!data.items.length) body.append(h("tr", {}, h("td", { colspan: 7 }, "No runs match.")));
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

/** What a run is (its headline): thumbnail and title, and for a failed run the step that
 *  failed (a link to it) and why, in one line. */
function what(run, thumbnails) {
  const head = run.headline || {};
  const url = head.thumbnail_url;
  if (url && !thumbnails.has(url)) {
    thumbnails.set(url, h("img", { src: url, alt: "", class: "thumb", loading: "lazy" }));
  }
  const failed = head.failed_reason ? `${head.failed_step ? `${head.failed_step}: ` : ""}${head.failed_reason}` : "";
  return h("td", { class: "what" },
    url ? thumbnails.get(url) : "",
    h("span", { "data-title": true }, head.title || ""),
    failed ? h("div", { class: "error-text failed", "data-failed": head.failed_step || "" },
      head.failed_step ? link(stepPath(run.id, head.failed_step), failed) : failed) : "");
}
