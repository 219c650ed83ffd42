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
  // A run that ended before the stream connected answers 204 and the browser gives up: read
  // the page once more, so an action's run that finished in a blink does not show "running".
  source.addEventListener("error", () => { if (source.readyState === EventSource.CLOSED) later(); });
  return () => { clearTimeout(pending); source.close(); };
}
