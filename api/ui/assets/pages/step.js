// A step (/ui/runs/{id}/steps/{key}): its status, attempts with their errors, artifacts
// and output, and the retry and revise actions; kept current from the run's SSE stream.

import { api } from "../api.js";
import { retry } from "../dialogs.js";
import { badge, h, link, runPath, setPage, span, when } from "../dom.js";
import { follow } from "../follow.js";
import { artifactsOf, artifactUrl, media } from "../media.js";
import { adopt, live } from "../nav.js";
import { states } from "../states.js";
import { origin } from "./graph.js";
import { reviser } from "./revise.js";

export async function stepPage(gen, id, key) {
  const known = await states();
  if (!live(gen)) return;
  const actions = h("div", { class: "actions" });
  const body = h("div");
  const editor = reviser(id, key); // outside `body`: a refresh keeps what is being typed
  let step = null;
  setPage(`${key} · run ${id.slice(0, 8)}`,
    h("p", {}, link(runPath(id), `← Run ${id.slice(0, 8)}`)),
    h("h1", {}, "Step ", h("span", { class: "mono" }, key)), actions, editor.box, body);

  async function refresh() {
    const [{ data: run }, { data: attempts }] = await Promise.all([
      api(`/runs/${id}`), api(`/runs/${id}/steps/${encodeURIComponent(key)}/attempts`),
    ]);
    step = run.steps.find((s) => s.key === key);
    const busy = known.run.live.includes(run.status);
    actions.replaceChildren(
      h("button", { type: "button", onclick: () => retry(id, key), disabled: busy }, "Retry step (and what follows)"),
      h("button", { type: "button", class: "quiet", onclick: () => editor.open(step), disabled: busy,
        "aria-controls": "revise" }, "Revise output"));
    const artifacts = artifactsOf(step?.output);
    body.replaceChildren(
      h("dl", { class: "meta" },
        h("dt", {}, "Status"), h("dd", { id: "step-status" }, badge(step?.status || "pending")),
        h("dt", {}, "Run"), h("dd", {}, badge(run.status)),
        h("dt", {}, "Queue"), h("dd", {}, step?.queue || ""),
        h("dt", {}, "Attempts"), h("dd", {}, `${step?.attempts ?? 0} of at most ${step?.max_attempts ?? "?"}`),
        step?.reused_from ? [h("dt", {}, "Result"), h("dd", { id: "step-origin" }, origin(step.reused_from, true))] : []),
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
  adopt(gen, follow(id, refresh, known.run.terminal));
}
