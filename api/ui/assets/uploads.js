// A param naming uploaded assets (short_video's images, music): a file input whose files
// are POSTed to /assets as they are picked; the returned ids go into the run's params.

import { explain, uploadAsset } from "./api.js";
import { h } from "./dom.js";

const ACCEPT = { image: "image/png,image/jpeg,image/webp,image/gif", audio: "audio/*" };

/** The field's element, and `ids()`: what the params should say (null: nothing picked). */
export function assetField(name, schema, kind) {
  const id = `p-${name}`;
  const many = schema.type === "array" || (schema.anyOf || []).some((b) => b.type === "array");
  const picked = []; // assets uploaded, in the order picked
  const list = h("ul", { class: "assets", id: `${id}-assets` });
  const error = h("div", { class: "error-text", id: `${id}-error`, role: "alert" });
  const input = h("input", { id, type: "file", multiple: many, accept: ACCEPT[kind] || null,
    "data-asset": name, onchange: async () => {
      error.textContent = "";
      for (const file of input.files) {
        const row = h("li", {}, `${file.name}: uploading…`);
        list.append(row);
        try {
          const asset = await uploadAsset(file);
          if (kind && asset.kind !== kind) throw new Error(`${file.name} is ${asset.kind}, not ${kind}`);
          if (!many) { picked.length = 0; list.replaceChildren(row); }
          picked.push(asset);
          row.textContent = `${file.name}: ${asset.kind}, ${asset.size} bytes, `;
          row.append(h("code", { class: "mono" }, asset.id));
          row.dataset.assetId = asset.id;
        } catch (err) {
          row.remove();
          error.textContent = err instanceof Error && !("status" in err) ? err.message : explain(err);
        }
      }
      input.value = "";
    } });
  const hint = [schema.description, kind ? `${kind} files, uploaded as you pick them` : ""]
    .filter(Boolean).join(" · ");
  const element = h("div", { class: "field" }, h("label", { for: id, class: "mono" }, name), input,
    h("div", { class: "hint", id: `${id}-hint` }, hint), list, error);
  const ids = () => (picked.length ? (many ? picked.map((a) => a.id) : picked[0].id) : null);
  return { element, ids };
}
