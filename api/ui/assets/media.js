// A step's artifacts: found in its output, linked, and the videos and images shown.

import { h } from "./dom.js";

export function artifactsOf(value, found = []) {
  if (value && typeof value === "object") {
    if (typeof value.sha256 === "string" && typeof value.size === "number" && value.path) found.push(value);
    else Object.values(value).forEach((v) => artifactsOf(v, found));
  }
  return found;
}

export function artifactUrl(runId, artifact) {
  const key = artifact.key || "";
  const prefix = `${runId}/`;
  return key.startsWith(prefix) ? `/runs/${runId}/artifacts/${key.slice(prefix.length).split("/").map(encodeURIComponent).join("/")}` : null;
}

const mediaShown = new Map(); // url + sha256 -> element: a refresh keeps a playing video

/** A new page starts with no media kept. */
export function forgetMedia() {
  mediaShown.clear();
}

/** The videos (playable) and images (shown) among a step's artifacts. */
export function media(runId, artifacts) {
  return h("div", { class: "media" }, artifacts.map((a) => {
    const url = artifactUrl(runId, a);
    if (!url) return "";
    const id = `${url}#${a.sha256}`;
    if (!mediaShown.has(id)) {
      if (a.path.endsWith(".mp4")) {
        mediaShown.set(id, h("video", { src: url, controls: true, preload: "metadata", "aria-label": "The video" }));
      } else if (a.path.endsWith(".png")) {
        mediaShown.set(id, h("img", { src: url, alt: "Thumbnail of the video" }));
      } else return "";
    }
    return mediaShown.get(id);
  }));
}
