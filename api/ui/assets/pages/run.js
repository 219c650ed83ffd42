// A run (/ui/runs/{id}): its actions, facts, steps, attempts, revisions, params and
// history, kept current from the run's SSE stream.

import { api } from "../api.js";
import { cancel, resume } from "../dialogs.js";
import { badge, duration, h, link, setPage, stepPath, when } from "../dom.js";
import { follow } from "../follow.js";
import { artifactsOf, media } from "../media.js";
import { adopt, live } from "../nav.js";
import { states } from "../states.js";
import { graph, timeline } from "./graph.js";
import { revisions } from "./revisions.js";

export async function runPage(gen, id) {
  const [{ data: workflows }, known] = await Promise.all([api("/workflows"), states()]);
  if (!live(gen)) return;
  const actions = h("div", { class: "actions" });
  const body = h("div");
  const opened = openedGroups(id);
  setPage(`Run ${id.slice(0, 8)}`, h("h1", {}, "Run ", h("span", { class: "mono" }, id)), actions, body);

  async function refresh() {
    const [{ data: run }, { data: attempts }, { data: history }, { data: revised }] = await Promise.all([
      api(`/runs/${id}`), api(`/runs/${id}/attempts`), api(`/runs/${id}/history`), api(`/runs/${id}/revisions`),
    ]);
    const workflow = workflows.find((w) => w.name === run.workflow);
    actions.replaceChildren(
      h("button", { type: "button", onclick: () => resume(run), disabled: !known.run.resumable.includes(run.status) }, "Resume run"),
      h("button", { type: "button", class: "danger", onclick: () => cancel(run), disabled: !known.run.cancellable.includes(run.status) }, "Cancel run"),
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
        run.error ? [h("dt", {}, "Error"), h("dd", { class: "error-text", id: "run-error" }, errorLine(id, run.error))] : []),
      h("h2", {}, "Steps"), workflow ? graph(run, workflow, run.steps, opened, known.step.precedence) : h("p", {}, "Unknown workflow."),
      h("h2", {}, "Attempts"), attempts.length ? timeline(run, attempts) : h("p", { class: "muted" }, "No attempt yet."),
      h("h2", {}, "Revisions"), revisions(run, revised),
      h("h2", {}, "Params"), h("pre", {}, JSON.stringify(run.params, null, 2)),
      h("h2", {}, "History"), h("ul", { id: "history" }, history.map((e) => h("li", { "data-kind": e.kind },
        h("strong", {}, e.kind), e.step ? [" ", link(stepPath(id, e.step), `${e.step} #${e.attempt}`)] : "",
        ` by ${e.actor}, ${when(e.created_at)}`, h("span", { class: "muted mono" }, detailOf(e))))),
    );
  }
  await refresh();
  adopt(gen, follow(id, refresh, known.run.terminal));
}

/** The run's error, as a link to the step that failed (its attempts and traceback). */
function errorLine(id, error) {
  const text = `${error.step ? `${error.step}: ` : ""}${error.type}: ${error.message}`;
  return error.step ? link(stepPath(id, error.step), text) : text;
}

/** A history entry's detail in a line: a step's error, or an action's detail as JSON. */
function detailOf(entry) {
  const detail = entry.detail || {};
  if (entry.step) return detail.error_type ? ` ${detail.error_type}: ${detail.message || ""}` : "";
  return Object.keys(detail).length && entry.kind !== "created" ? ` ${JSON.stringify(detail)}` : "";
}

/** The map groups the operator opened on this run's page, kept for the tab's session: they
 *  stay open as the page refreshes, is drawn again after an action, or is come back to. */
function openedGroups(id) {
  const key = `reelflow.opened.${id}`;
  let names;
  try { names = new Set(JSON.parse(sessionStorage.getItem(key) || "[]")); } catch { names = new Set(); }
  const save = () => sessionStorage.setItem(key, JSON.stringify([...names]));
  return {
    has: (name) => names.has(name),
    add: (name) => { names.add(name); save(); },
    delete: (name) => { names.delete(name); save(); },
  };
}
