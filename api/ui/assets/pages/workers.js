// Workers (/ui/workers): queue depths, slot pools (who holds each slot, who waits), and
// the workers online, refreshed every 3 s.

import { api } from "../api.js";
import { every, h, link, runPath, setPage, stepPath, when } from "../dom.js";
import { adopt } from "../nav.js";

export async function workersPage(gen) {
  const body = h("div");
  setPage("Workers", h("h1", {}, "Workers"), body);
  async function refresh() {
    const [{ data }, { data: pools }] = await Promise.all([api("/workers"), api("/pools")]);
    body.replaceChildren(
      h("h2", {}, "Queues"),
      h("table", {}, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Queue"), h("th", { scope: "col" }, "Waiting"))),
        h("tbody", {}, Object.entries(data.queues).map(([q, n]) => h("tr", {}, h("td", {}, q), h("td", {}, n ?? "broker did not answer"))))),
      ...poolSection(pools || []),
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

/** Each pool: held/size, each slot's holder (or free), and who waits by tenant and priority. */
function poolSection(pools) {
  if (!pools.length) return [];
  return [h("h2", {}, "Pools"), ...pools.map((pool) => h("section", { class: "pool", "data-pool": pool.name },
    h("h3", {}, `${pool.name}: ${pool.held} of ${pool.size} slots held`),
    h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, ["Slot", "Step", "Tenant", "Worker", "Since"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, pool.slots.map((s) => h("tr", {},
        h("td", {}, String(s.slot)),
        h("td", {}, s.step ? [link(stepPath(s.run_id, s.step), s.step), " of run ", link(runPath(s.run_id), s.run_id.slice(0, 8))]
          : h("span", { class: "muted" }, s.reserved_for_step ? "granted, starting" : "free")),
        h("td", {}, s.tenant ?? ""), h("td", { class: "mono" }, s.worker ?? ""), h("td", {}, when(s.since))))))),
    pool.waiting.length ? h("p", {}, "Waiting: ", pool.waiting.map((w) =>
      `${w.count} of ${w.tenant} at priority ${w.priority}`).join("; ")) : h("p", { class: "muted" }, "Nothing waits."),
  ))];
}
