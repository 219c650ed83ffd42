// Workers (/ui/workers): queue depths and the workers online, refreshed every 3 s.

import { api } from "../api.js";
import { every, h, link, runPath, setPage, stepPath, when } from "../dom.js";
import { adopt } from "../nav.js";

export async function workersPage(gen) {
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
