// The status vocabulary of runs, steps and attempts, as the API states it (GET /states):
// which statuses exist and which operations each allows. Read once per page load.

import { api } from "./api.js";

let loaded = null;

/** {run: {statuses, terminal, live, resumable, retryable, cancellable},
 *   step: {statuses, terminal, in_flight, precedence}, attempt: [...]} */
export function states() {
  loaded ||= api("/states").then(({ data }) => data).catch((error) => {
    loaded = null; // not cached: the next page asks again
    throw error;
  });
  return loaded;
}
