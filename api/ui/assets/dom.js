// Building the page: the h() element helper, badges and links, formatting, the notice line.

export const main = document.getElementById("main");
const notice = document.getElementById("notice");

/** An element with attributes (`on…` are listeners) and children (nodes or text). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "style") el.style.cssText = v;  // CSSOM: allowed by the page's CSP
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export const badge = (status) => h("span", { class: `badge s-${status}` }, status);
export const link = (href, ...text) => h("a", { href, "data-link": true }, ...text);
export const runPath = (id) => `/ui/runs/${id}`;
export const stepPath = (id, key) => `/ui/runs/${id}/steps/${encodeURIComponent(key)}`;

export function when(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleString(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
    second: "2-digit", timeZoneName: "short",
  });
}

export function span(ms) {
  if (ms === null || ms === undefined) return "";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m} min ${Math.round(s % 60)} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function duration(run) {
  if (!run.started_at) return "";
  const end = run.finished_at ? new Date(run.finished_at) : new Date();
  return span(end - new Date(run.started_at));
}

export function say(text, bad = false) {
  notice.textContent = text;
  notice.className = bad ? "bad" : "";
}

export function setPage(title, ...content) {
  document.title = `${title} · reelflow`;
  main.replaceChildren(...content);
  for (const a of document.querySelectorAll("nav a")) {
    const here = location.pathname === a.getAttribute("href")
      || (a.getAttribute("href") === "/ui" && location.pathname.startsWith("/ui/runs"));
    if (here) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
}

export function every(ms, fn) {
  const timer = setInterval(fn, ms);
  return () => clearInterval(timer);
}
