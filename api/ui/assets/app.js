// reelflow's operator UI. Plain JavaScript modules, no build step; it talks to the public
// HTTP API (the same one curl and the CLI use) and follows runs through their SSE streams.
// This entry module routes by location (history API); each page is a module in pages/.

import { apiIsGuarded, explain, openSession, Problem } from "./api.js";
import { askToken } from "./dialogs.js";
import { h, link, setPage } from "./dom.js";
import { forgetMedia } from "./media.js";
import { go, render, router } from "./nav.js";
import { newRunPage } from "./pages/new.js";
import { runPage } from "./pages/run.js";
import { runsPage } from "./pages/runs.js";
import { stepPage } from "./pages/step.js";
import { workersPage } from "./pages/workers.js";

router(async (gen) => {
  forgetMedia();
  const path = location.pathname.replace(/\/+$/, "") || "/ui";
  let m;
  try {
    if (path === "/ui") await runsPage(gen, location.search);
    else if (path === "/ui/new") await newRunPage(gen, location.search);
    else if (path === "/ui/workers") await workersPage(gen);
    else if ((m = path.match(/^\/ui\/runs\/([0-9a-f-]{36})\/steps\/(.+)$/))) await stepPage(gen, m[1], decodeURIComponent(m[2]));
    else if ((m = path.match(/^\/ui\/runs\/([0-9a-f-]{36})$/))) await runPage(gen, m[1]);
    else setPage("Not found", h("h1", {}, "Not found"), h("p", {}, link("/ui", "All runs")));
  } catch (error) {
    const retry = error instanceof Problem && error.status === 401
      ? h("p", {}, h("button", { type: "button", onclick: () => askToken(render) }, "Enter the API token"))
      : "";
    setPage("Error", h("h1", {}, "Could not load this page"), h("p", { class: "error-text", role: "alert" }, explain(error)), retry);
  }
});

document.addEventListener("click", (e) => {
  const a = e.target.closest("a[data-link]");
  if (!a || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
  e.preventDefault();
  go(a.getAttribute("href"));
});
window.addEventListener("popstate", render);
document.getElementById("token-button").addEventListener("click", askToken);
apiIsGuarded().then((yes) => { document.getElementById("token-button").hidden = !yes; });
openSession().catch(() => {}).then(render); // a saved token renews its read cookie first
