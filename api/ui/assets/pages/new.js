// Start a run (/ui/new): a form drawn from the workflow's params schema (files for the
// params naming uploads); the API's validation errors are shown next to their fields.

import { api, explain } from "../api.js";
import { h, runPath, say, setPage } from "../dom.js";
import { go, live } from "../nav.js";
import { assetField } from "../uploads.js";

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

export async function newRunPage(gen, query) {
  const workflows = (await api("/workflows")).data;
  if (!live(gen)) return;
  const chosen = new URLSearchParams(query).get("workflow") || workflows[0]?.name;
  const workflow = workflows.find((w) => w.name === chosen) || workflows[0];
  const props = workflow.params_schema.properties || {};
  const required = new Set(workflow.params_schema.required || []);
  const assetKinds = workflow.asset_params || {};
  const uploads = Object.fromEntries(Object.keys(assetKinds).filter((n) => props[n])
    .map((n) => [n, assetField(n, props[n], assetKinds[n])]));
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
    for (const [name, field] of Object.entries(uploads)) {
      if (field.ids() !== null) params[name] = field.ids();
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
        const slot = form.querySelector(`#p-${CSS.escape(name)}-error`)
          || form.querySelector(`#p-${CSS.escape(name.split(".")[0])}-error`); // images.1
        if (slot) slot.textContent = err.message;
      }
    }
  } },
    h("div", { class: "field" }, h("label", { for: "workflow" }, "Workflow"),
      h("select", { id: "workflow", name: "workflow", onchange: (e) => go(`/ui/new?workflow=${e.target.value}`) },
        workflows.map((w) => h("option", { value: w.name, selected: w.name === workflow.name }, w.name))),
      h("div", { class: "hint" }, workflow.description)),
    Object.entries(props).map(([name, schema]) => uploads[name]?.element
      || fieldFor(name, schema, required.has(name))),
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
