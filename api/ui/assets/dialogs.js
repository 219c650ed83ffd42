// The confirm and token dialogs, and the actions on a run that go through them.

import { api, explain, Problem, saveToken } from "./api.js";
import { h, say } from "./dom.js";
import { render } from "./nav.js";

/** The confirm dialog with `title` and `content`: resolves true on Confirm. */
export function ask(title, ...content) {
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

export const resume = (run) => act("Resume run", `/runs/${run.id}/resume`, true);
export const cancel = (run) => act("Cancel run", `/runs/${run.id}/cancel`, false);
export const retry = (id, key) => act(`Retry ${key}`, `/runs/${id}/steps/${encodeURIComponent(key)}/retry`, true);

/** Ask for the API's token and keep it; then `saved()` (by default: say to try again). */
export function askToken(saved = () => say("Token saved. Try the action again.")) {
  const dialog = document.getElementById("token");
  const input = document.getElementById("token-input");
  input.value = "";
  dialog.addEventListener("close", async () => {
    if (dialog.returnValue !== "ok" || !input.value) return;
    try {
      await saveToken(input.value);
      await saved();
    } catch (error) {
      say(explain(error), true);
    }
  }, { once: true });
  dialog.returnValue = "";
  dialog.showModal();
  input.focus();
}
