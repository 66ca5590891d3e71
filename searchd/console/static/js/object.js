// The whole object of a result, in a dialog: every property (images as pictures), its vectors, its times.
import { clear, errorBox, h, thumbnail } from "./dom.js";

function shortVector(vector) {
  const flat = vector.flat(Infinity);
  const head = flat.slice(0, 6).map((x) => Number(x).toFixed(4)).join(", ");
  const shape = Array.isArray(vector[0]) ? `${vector.length} × ${vector[0].length}` : `${vector.length}`;
  return `[${head}${flat.length > 6 ? ", …" : ""}] (${shape})`;
}

export async function showObject(app, collection, id) {
  const dialog = document.getElementById("object-dialog");
  const body = document.getElementById("object-body");
  document.getElementById("object-title").textContent = `${collection.name} ${id}`;
  clear(body, h("p", {}, "Loading…"));
  if (!dialog.open) dialog.showModal();
  let object;
  try {
    object = await app.api.get(`/v1/objects/${encodeURIComponent(collection.name)}/${encodeURIComponent(id)}?include=vector`);
  } catch (error) {
    clear(body, errorBox(error.message));
    return;
  }
  const types = Object.fromEntries(collection.properties.map((p) => [p.name, p.type]));
  const rows = Object.entries(object.properties || {}).map(([name, value]) =>
    h(
      "tr",
      {},
      h("th", { scope: "row" }, name),
      h("td", {}, types[name] === "BLOB" ? thumbnail(value, `${name} of ${id}`) : typeof value === "object" && value !== null ? JSON.stringify(value) : String(value)),
    ),
  );
  const vectors = Object.entries(object.vectors || {}).map(([name, vector]) => h("tr", {}, h("th", { scope: "row" }, name), h("td", { class: "mono" }, shortVector(vector))));
  clear(
    body,
    h("table", { class: "object" }, h("caption", {}, "Properties"), h("tbody", {}, rows)),
    vectors.length ? h("table", { class: "object" }, h("caption", {}, "Vectors"), h("tbody", {}, vectors)) : null,
    h("p", { class: "muted" }, `created ${new Date(object.creationTimeUnix).toLocaleString()} · updated ${new Date(object.lastUpdateTimeUnix).toLocaleString()}`),
  );
}
