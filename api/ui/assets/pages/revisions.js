// A run's revisions (on the run page): who changed what, when and why, each change as a
// diff (params field by field, replaced outputs path by path), and what it reran.

import { h, link, stepPath, when } from "../dom.js";
import { diffLines } from "../jsondiff.js";

/** The steps a plan reruns, with the reason of each (or "nothing"). */
export function rerunList(rerun) {
  const keys = Object.keys(rerun || {});
  if (!keys.length) return h("span", {}, "nothing");
  return h("ul", { class: "plan" }, keys.map((k) => h("li", { "data-rerun": k },
    h("span", { class: "mono" }, k), h("span", { class: "muted" }, ` (${rerun[k]})`))));
}

const diffBlock = (lines, label) => h("pre", { class: "diff", "aria-label": label },
  lines.length ? lines.join("\n") : "no change");

function revision(run, r) {
  const plan = r.plan || {};
  const outputs = Object.keys({ ...(r.outputs_before || {}), ...(r.outputs_after || {}) });
  const paramsChanged = Object.keys(r.params_patch || {}).length > 0;
  return h("li", { class: "revision", "data-revision": r.number },
    h("h3", {}, `Revision ${r.number}`),
    h("p", {}, h("span", { class: "muted" }, `by ${r.actor}, ${when(r.created_at)}: `),
      h("q", { class: "reason" }, r.reason)),
    paramsChanged ? [h("h4", {}, "Params"),
      diffBlock(diffLines(r.params_before, r.params_after), `Params changed by revision ${r.number}`)] : "",
    outputs.flatMap((key) => [
      h("h4", {}, "Output of ", link(stepPath(run.id, key), key)),
      diffBlock(diffLines(r.outputs_before?.[key] ?? null, r.outputs_after?.[key] ?? null),
        `Output of ${key} changed by revision ${r.number}`)]),
    h("div", { class: "rerun" }, h("strong", {}, "Reran: "), rerunList(plan.rerun)),
    plan.superseded?.length ? h("p", {}, h("strong", {}, "Dropped items: "), plan.superseded.join(", ")) : "",
    plan.reuse ? h("p", { class: "muted" }, `Kept the results of ${plan.reuse.length} step${plan.reuse.length === 1 ? "" : "s"}.`) : "");
}

/** The "Revisions" section's content: every revision, oldest first. */
export function revisions(run, list) {
  if (!list.length) return h("p", { class: "muted", id: "revisions" }, "No revision yet.");
  return h("ol", { class: "revisions", id: "revisions" }, list.map((r) => revision(run, r)));
}
