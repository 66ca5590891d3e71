// Collections: what the served catalog declares, with object counts and the YAML block each came from.
import { clear, errorBox, h } from "./dom.js";

function yesNo(flag) {
  return flag ? "yes" : "no";
}

export class CollectionsView {
  constructor(app, el) {
    this.app = app;
    this.el = el;
  }

  async show() {
    if (!this.el.childElementCount) clear(this.el, h("p", {}, "Loading collections…"));
    let data;
    try {
      data = await this.app.catalog(true);
    } catch (error) {
      if (error.status !== 401) clear(this.el, h("h2", {}, "Collections"), errorBox(error.message));
      return;
    }
    this.render(data);
  }

  render(data) {
    clear(
      this.el,
      h("h2", {}, "Collections"),
      h("p", { class: "muted" }, `Served from ${data.configPath}${data.authEnabled ? " · API keys required" : ""}`),
      data.collections.map((c) => this.collection(c)),
    );
  }

  collection(c) {
    const properties = h(
      "table",
      {},
      h("caption", {}, "Properties"),
      h("thead", {}, h("tr", {}, ["name", "type", "tokenization", "searchable", "filterable"].map((t) => h("th", { scope: "col" }, t)))),
      h(
        "tbody",
        {},
        c.properties.map((p) =>
          h("tr", {}, h("th", { scope: "row", title: p.description || null }, p.name, p.image ? " (image)" : ""), h("td", {}, p.type), h("td", {}, p.tokenization || "–"), h("td", {}, yesNo(p.searchable)), h("td", {}, yesNo(p.filterable))),
        ),
      ),
    );
    const vectors = h(
      "table",
      { class: "vectors" },
      h("caption", {}, "Named vectors"),
      h("thead", {}, h("tr", {}, ["name", "module", "model", "dimensions", "index", "queries"].map((t) => h("th", { scope: "col" }, t)))),
      h(
        "tbody",
        {},
        c.vectors.map((v) =>
          h(
            "tr",
            { dataset: { vector: v.name } },
            h("th", { scope: "row" }, v.name, v.default ? " (default)" : ""),
            h("td", {}, v.module),
            h("td", {}, v.model || "–"),
            h("td", {}, String(v.dimensions), v.multiVector ? " × tokens" : ""),
            h("td", {}, `${v.index.type}, ${v.index.distance}`),
            h("td", {}, v.queries.length ? v.queries.join(", ") : "vectors only"),
          ),
        ),
      ),
    );
    const source = c.source
      ? h("details", { class: "source" }, h("summary", {}, `YAML: ${c.source.file}:${c.source.line}`), h("pre", {}, h("code", {}, c.source.text)))
      : h("p", { class: "muted" }, "The YAML block is not in the config files as they are now.");
    const search = h("button", {
      type: "button",
      onclick: () => {
        this.app.selectedCollection = c.name;
        this.app.go("search");
      },
    }, `Search ${c.name}`);
    return h(
      "article",
      { class: "collection", dataset: { collection: c.name } },
      h("h3", {}, c.name, " ", h("span", { class: "badge count" }, `${c.count} object${c.count === 1 ? "" : "s"}`)),
      c.description ? h("p", {}, c.description) : null,
      h("div", { class: "tables" }, properties, vectors),
      h("p", { class: "bm25" }, `BM25: k1 ${c.bm25.k1}, b ${c.bm25.b}, stopwords ${c.bm25.stopwords}`),
      source,
      search,
    );
  }
}
