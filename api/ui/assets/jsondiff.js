// A compact diff of two JSON values: the paths that changed, each with its value before
// and after (`scenes.3.narration: "old" -> "new"`). Pure functions, no DOM.

const ABSENT = Symbol("absent"); // a field or item one side does not have

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

function same(a, b) {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((v, i) => same(v, b[i]));
  if (isObject(a) && isObject(b)) {
    const ka = Object.keys(a);
    return ka.length === Object.keys(b).length && ka.every((k) => Object.hasOwn(b, k) && same(a[k], b[k]));
  }
  return false;
}

/** The changes from `before` to `after`: [{path, before, after}], in document order; a
 *  side that lacks the field or item has `ABSENT` there (see `shown`). Objects and arrays
 *  are walked into; anything else that differs is one change. */
export function jsonDiff(before, after, path = [], found = []) {
  if (same(before, after)) return found;
  if (isObject(before) && isObject(after)) {
    const names = [...Object.keys(before), ...Object.keys(after).filter((k) => !Object.hasOwn(before, k))];
    for (const k of names) {
      jsonDiff(Object.hasOwn(before, k) ? before[k] : ABSENT, Object.hasOwn(after, k) ? after[k] : ABSENT, [...path, k], found);
    }
  } else if (Array.isArray(before) && Array.isArray(after)) {
    for (let i = 0; i < Math.max(before.length, after.length); i++) {
      jsonDiff(i < before.length ? before[i] : ABSENT, i < after.length ? after[i] : ABSENT, [...path, i], found);
    }
  } else {
    found.push({ path: path.join("."), before, after });
  }
  return found;
}

/** A value as a change shows it: compact JSON, cut at `max` characters. */
export function shown(value, max = 80) {
  if (value === ABSENT || value === undefined) return "(absent)";
  const text = JSON.stringify(value);
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** The changes as lines of text, at most `limit` (then how many more). */
export function diffLines(before, after, limit = 40) {
  const changes = jsonDiff(before, after);
  const lines = changes.slice(0, limit).map((c) => `${c.path || "(the whole value)"}: ${shown(c.before)} -> ${shown(c.after)}`);
  if (changes.length > limit) lines.push(`… and ${changes.length - limit} more`);
  return lines;
}
