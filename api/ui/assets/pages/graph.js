// A run's steps as the workflow lays them out, and its attempts on a time line.

import { badge, h, link, span, stepPath, when } from "../dom.js";

/** A map group's status: the first in `precedence` (from /states) that any item has. */
function aggregate(statuses, precedence) {
  return precedence.find((s) => statuses.includes(s)) ?? "pending";
}

/** Where a step's result came from when it did not run in this execution: "edited in
 *  revision n" or "reused from <run id prefix>" (`full`: which step and attempt too). */
export function origin(from, full = false) {
  if (!from) return "";
  if (from.revision !== undefined && from.revision !== null) return `edited in revision ${from.revision}`;
  if (!from.run_id) return "";
  const where = full && from.key ? ` (${from.key}, attempt ${from.attempt})` : "";
  return `reused from ${full ? "run " : ""}${from.run_id.slice(0, 8)}${where}`;
}

/** The steps in the workflow's layout (columns left to right), a map's items grouped. */
export function graph(run, workflow, steps, opened, precedence) {
  const byName = Object.fromEntries(workflow.steps.map((s) => [s.name, s]));
  const columns = workflow.layout.map((col) => col.map((name) => byName[name]).filter(Boolean));
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
          step?.attempts > 1 ? h("span", { class: "muted" }, ` ${step.attempts} attempts`) : "",
          step?.reused_from ? h("span", { class: "muted note", "data-origin": info.name }, origin(step.reused_from)) : "");
      }
      const status = aggregate(mine.map((s) => s.status), precedence);
      const done = mine.filter((s) => s.status === "succeeded").length;
      const reused = mine.filter((s) => s.reused_from?.run_id).length;
      const edited = mine.filter((s) => s.reused_from && !s.reused_from.run_id).length;
      const notes = [reused ? `${reused} reused` : "", edited ? `${edited} edited` : ""].filter(Boolean);
      return h("div", { class: `node s-${status}`, role: "listitem", "data-step": info.name },
        h("span", { class: "name" }, `${info.name} ×${mine.length}`), badge(status),
        h("span", { class: "muted" }, ` ${done}/${mine.length} done`),
        notes.length ? h("span", { class: "muted note", "data-origin": info.name }, notes.join(", ")) : "",
        h("details", { open: opened.has(info.name),
          ontoggle: (e) => (e.target.open ? opened.add(info.name) : opened.delete(info.name)) },
          h("summary", {}, `Items of ${info.mapped_over}`),
          h("ul", {}, mine.sort((a, b) => a.item_index - b.item_index).map((s) => h("li", {},
            h("a", { href: stepPath(run.id, s.key), "data-link": true, class: `badge s-${s.status}`,
              "aria-label": `${s.key} ${s.status}` }, `${s.item_index}: ${s.status}`))))));
    }))));
}

export function timeline(run, attempts) {
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
        // Waited: recorded (started_at - enqueued_at), not a gap between timestamps.
        h("td", { title: a.enqueued_at ? `queued ${when(a.enqueued_at)}` : "not recorded" },
          span(a.waited_ms)),
        h("td", { class: "hide-narrow" }, when(a.started_at)),
        h("td", {}, span(a.duration_ms)),
        h("td", { class: "bar-cell" }, h("div", { class: "bar", "aria-hidden": "true" },
          h("span", { class: `s-${a.status}`, style: `left:${left}%;width:${width}%;background:currentColor` }))));
    }))));
}
