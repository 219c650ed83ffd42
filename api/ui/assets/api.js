// Talking to the API: the fetch wrapper, its errors in words, and the bearer token.

const TOKEN_KEY = "reelflow.token";

export class Problem extends Error {
  constructor(status, body) {
    super(body?.detail || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

export async function api(path, { method = "GET", body, headers = {} } = {}) {
  const token = localStorage.getItem(TOKEN_KEY);
  const sent = { Accept: "application/json", ...headers };
  if (token) sent.Authorization = `Bearer ${token}`; // reads need it too, unless PUBLIC_READS
  // Every change is sent as JSON, a body-less one too: the API refuses form-shaped writes.
  if (method !== "GET") sent["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers: sent, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { detail: text }; }
  if (!response.ok) throw new Problem(response.status, data);
  return { status: response.status, data };
}

/** Upload one file (POST /assets, multipart): the asset {id, sha256, kind, size, ...}.
 * X-Requested-With says it is no cross-site form (the API refuses form-shaped writes). */
export async function uploadAsset(file) {
  const token = localStorage.getItem(TOKEN_KEY);
  const headers = { Accept: "application/json", "X-Requested-With": "fetch" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const body = new FormData();
  body.append("file", file, file.name);
  const response = await fetch("/assets", { method: "POST", headers, body });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { detail: text }; }
  if (!response.ok) throw new Problem(response.status, data);
  return data;
}

/** A problem, in words an operator can act on. */
export function explain(error) {
  if (!(error instanceof Problem)) return `The API did not answer (${error.message}).`;
  const detail = error.body.detail || error.message;
  if (error.status === 401) return `Refused: this API needs its token (401). ${detail}`;
  if (error.status === 409) return `Not now: ${detail} (409${error.body.run_status ? `, the run is ${error.body.run_status}` : ""}).`;
  if (error.status === 503) return `The service is unavailable: ${detail} (503). Try again shortly.`;
  if (error.status === 429) return `Too many requests: ${detail} (429).`;
  if (error.status === 413 || error.status === 415) return `Not taken: ${detail} (${error.status}).`;
  return `${detail} (${error.status}).`;
}

/** Keep the token for later requests (in this browser only), and open a read session. */
export async function saveToken(value) {
  localStorage.setItem(TOKEN_KEY, value);
  await openSession();
}

/** Images, videos and event streams cannot send a header: with a saved token, ask the API
 *  for its read cookie (HttpOnly, derived from the token), which the browser sends for them. */
export async function openSession() {
  if (localStorage.getItem(TOKEN_KEY)) await api("/ui/session", { method: "POST" });
}

let guarded = null; // does the API ask for a token? (its OpenAPI declares bearer security)
export async function apiIsGuarded() {
  if (guarded === null) {
    try {
      const { data } = await api("/openapi.json");
      // /metrics alone may have a token of its own (METRICS_TOKEN): not one for this UI.
      guarded = Object.entries(data?.paths || {}).some(([path, operations]) =>
        path !== "/metrics" && Object.values(operations).some((op) => op.security?.length));
    } catch { guarded = false; }
  }
  return guarded;
}
