// Which page is the live one, moving between pages (history API), and each page's cleanup.

import { main, say } from "./dom.js";

let leave = () => {}; // stops the current page's timers and streams
let current = 0; // which render is the live one: a slower, older one must not draw
let draw = async () => {}; // the router, set by app.js

export function router(fn) {
  draw = fn;
}

/** Is the render numbered `gen` still the live one? */
export const live = (gen) => gen === current;

/** Keep `stop` as the page's cleanup, unless a newer page has been rendered meanwhile. */
export function adopt(gen, stop) {
  if (gen === current) leave = stop; else stop();
}

/** Draw the page for the current location (again). */
export async function render() {
  leave();
  leave = () => {};
  await draw(++current);
}

export function go(href) {
  history.pushState(null, "", href);
  say("");
  render().then(() => main.focus({ preventScroll: true }));
}
