// Following a run through its SSE stream.

/** Re-read the page when the run's SSE stream says something changed (debounced); once
 *  the run has finished (a status in `terminal`, from /states), stop listening (an action
 *  on it renders the page again). */
export function follow(id, refresh, terminal) {
  const source = new EventSource(`/runs/${id}/events`);
  let pending = null;
  const later = () => {
    clearTimeout(pending);
    pending = setTimeout(() => refresh().catch(() => {}), 150);
  };
  source.addEventListener("step", later);
  source.addEventListener("run", (event) => {
    later();
    try { if (terminal.includes(JSON.parse(event.data).status)) source.close(); } catch { /* keep it */ }
  });
  return () => { clearTimeout(pending); source.close(); };
}
