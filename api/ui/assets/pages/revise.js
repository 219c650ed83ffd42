// Revising a step's output (on the step page): an editor for the output as JSON and the
// reason, the dry-run plan in the confirm dialog, then the revision itself.

import { api, explain, Problem } from "../api.js";
import { ask, askToken } from "../dialogs.js";
import { h, runPath, say } from "../dom.js";
import { go } from "../nav.js";
import { rerunList } from "./revisions.js";

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

function describe(plan) {
  return [
    h("div", { class: "plan-rerun" }, h("strong", {}, "Will rerun: "), rerunList(plan.rerun)),
    h("p", {}, h("strong", {}, "Replaces the output of: "), plan.edited.join(", ") || "nothing"),
    plan.superseded.length ? h("p", {}, h("strong", {}, "Drops items: "), plan.superseded.join(", ")) : "",
    h("p", {}, `Keeps the results of ${plural(plan.reuse.length, "step")}.`),
  ];
}

/** The editor of step `key`'s output: `box` goes on the page, `open(step)` shows it. */
export function reviser(id, key) {
  const box = h("section", { id: "revise", "aria-labelledby": "revise-title", hidden: true });
  const output = h("textarea", { id: "revise-output", name: "output", rows: 14, spellcheck: "false",
    "aria-describedby": "revise-output-error" });
  const reason = h("input", { id: "revise-reason", name: "reason", size: 60, maxlength: 2000,
    required: true, "aria-describedby": "revise-reason-error", autocomplete: "off" });
  const outputError = h("div", { class: "error-text", id: "revise-output-error", role: "alert" });
  const reasonError = h("div", { class: "error-text", id: "revise-reason-error", role: "alert" });
  const slots = [outputError, reasonError];

  /** The API's refusal beside the field it is about (the output, the reason), in words. */
  function show(error) {
    const own = `outputs.${key}`;
    for (const e of error.body?.errors || []) {
      const field = String(e.field || "");
      if (field.startsWith("reason")) { reasonError.append(h("div", {}, e.message)); continue; }
      const name = field === own ? "" : field.startsWith(`${own}.`) ? field.slice(own.length + 1) : field;
      outputError.append(h("div", {}, name ? `${name}: ${e.message}` : e.message));
    }
    if (!outputError.firstChild && !reasonError.firstChild) outputError.textContent = explain(error);
  }

  async function submit(event) {
    event.preventDefault();
    slots.forEach((s) => s.replaceChildren());
    let value;
    try { value = JSON.parse(output.value); } catch (e) {
      outputError.textContent = `This is not valid JSON (${e.message}). Nothing was sent.`;
      output.focus();
      return;
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      outputError.textContent = "The output must be a JSON object ({ … }). Nothing was sent.";
      output.focus();
      return;
    }
    if (!reason.value.trim()) {
      reasonError.textContent = "Say why: the reason is recorded with the revision.";
      reason.focus();
      return;
    }
    const body = { outputs: { [key]: value }, reason: reason.value.trim() };
    const path = `/runs/${id}/revise`;
    try {
      const { data: plan } = await api(`${path}?dry_run=true`, { method: "POST", body });
      if (!(await ask(`Revise ${key}`, ...describe(plan)))) return;
      const { data } = await api(path, { method: "POST", body });
      go(runPath(id));
      say(`Revision ${data.revision} of ${key}: accepted.`);
    } catch (error) {
      say(explain(error), true);
      show(error);
      if (error instanceof Problem && error.status === 401) askToken();
    }
  }

  const form = h("form", { onsubmit: submit, novalidate: true },
    h("h2", { id: "revise-title" }, `Revise the output of ${key}`),
    h("div", { class: "field" }, h("label", { for: "revise-output" }, "Output (JSON)"), output,
      h("div", { class: "hint" }, "It replaces the step's output; the steps that read it rerun."), outputError),
    h("div", { class: "field" }, h("label", { for: "revise-reason" }, "Reason"), reason,
      h("div", { class: "hint" }, "Recorded with the revision, for whoever reads the run later."), reasonError),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Show plan"),
      h("button", { type: "button", class: "quiet", onclick: () => { box.hidden = true; } }, "Close")));
  box.append(form);

  return {
    box,
    open(step) {
      if (box.hidden) {
        output.value = JSON.stringify(step?.output ?? {}, null, 2);
        reason.value = "";
        slots.forEach((s) => s.replaceChildren());
        box.hidden = false;
      }
      output.focus();
    },
  };
}
