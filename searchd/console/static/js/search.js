// Search: every kind of query on a collection, the GraphQL it sent, and the results as cards.
import { clear, copyText, errorBox, h, thumbnail } from "./dom.js";
import { curlSnippet, pythonSnippet, searchDocument } from "./graphql.js";
import { showObject } from "./object.js";
import { whereFieldset } from "./where.js";

const KINDS = [
  ["nearText", "nearText"],
  ["nearImage", "nearImage"],
  ["bm25", "bm25"],
  ["hybrid", "hybrid"],
  ["nearObject", "nearObject (more like this)"],
];
// What a vector must accept for each kind (the console's catalog says per vector); bm25 uses no vector.
const NEEDS = { nearText: "text", hybrid: "text", nearImage: "image", nearObject: null, bm25: undefined };
const FORMATS = { graphql: "GraphQL", curl: "curl", python: "weaviate-client (Python)" };

export class SearchView {
  constructor(app, el) {
    this.app = app;
    this.el = el;
    this.data = null;
    this.state = { kind: "nearText", text: "", image: null, imageName: "", objectId: "", alpha: 0.75, fusionType: "relativeScoreFusion", targetVectors: [], conditions: [], combine: "And", limit: 10 };
    this.sent = null; // {search, query, variables} of the last search
    this.format = "graphql";
  }

  async show() {
    if (!this.el.childElementCount) clear(this.el, h("p", {}, "Loading…"));
    try {
      this.data = await this.app.catalog();
    } catch (error) {
      if (error.status !== 401) clear(this.el, h("h2", {}, "Search"), errorBox(error.message));
      return;
    }
    const names = this.data.collections.map((c) => c.name);
    const wanted = this.app.selectedCollection;
    if (wanted && names.includes(wanted)) this.state.collection = wanted;
    if (!names.includes(this.state.collection)) this.state.collection = names[0];
    if (!this.form || this.renderedFor !== this.data) this.render();
    this.takeFocus();
  }

  // The "/" shortcut: focus the query box now, or once the view is drawn.
  focusQuery() {
    this.wantFocus = true;
    this.takeFocus();
  }

  takeFocus() {
    const box = document.getElementById("search-text");
    if (this.wantFocus && box && !this.el.hidden) {
      this.wantFocus = false;
      box.focus();
    }
  }

  get collection() {
    return this.data.collections.find((c) => c.name === this.state.collection);
  }

  render() {
    this.renderedFor = this.data;
    this.form = h("form", { id: "search-form", novalidate: true, onsubmit: (event) => this.submit(event) });
    this.status = h("p", { id: "search-status", role: "status", "aria-live": "polite" });
    this.results = h("ol", { id: "results", class: "results", "aria-label": "Results", onkeydown: (event) => this.moveFocus(event) });
    this.queryPanel = h("section", { class: "query", "aria-label": "The query sent", hidden: true });
    // Two columns on a wide screen (the form and the query beside the results), one on a phone.
    clear(this.el, h("h2", {}, "Search"), h("div", { class: "search-layout" }, h("div", { class: "search-side" }, this.form, this.queryPanel), h("div", { class: "search-main" }, this.status, this.results)));
    this.renderForm();
  }

  renderForm() {
    const state = this.state;
    const collection = this.collection;
    const limits = this.data.limits;
    const kindChoice = h(
      "fieldset",
      { class: "kinds" },
      h("legend", {}, "Kind"),
      KINDS.map(([kind, label]) =>
        h(
          "label",
          {},
          h("input", { type: "radio", name: "kind", value: kind, checked: state.kind === kind, disabled: kind === "nearObject" && !state.objectId, onchange: () => this.setKind(kind) }),
          ` ${label}`,
        ),
      ),
    );
    const text = h(
      "div",
      { class: "for-text" },
      h("label", { for: "search-text" }, "Query"),
      h("input", { id: "search-text", type: "search", value: state.text, placeholder: "red circle", oninput: (e) => (state.text = e.target.value) }),
    );
    const imageInput = h("input", { id: "search-image", type: "file", accept: "image/*", onchange: (e) => this.readImage(e.target.files[0]) });
    const drop = h(
      "div",
      {
        class: "drop",
        ondragover: (e) => {
          e.preventDefault();
          drop.classList.add("over");
        },
        ondragleave: () => drop.classList.remove("over"),
        ondrop: (e) => {
          e.preventDefault();
          drop.classList.remove("over");
          if (e.dataTransfer.files.length) this.readImage(e.dataTransfer.files[0]);
        },
      },
      h("label", { for: "search-image" }, "Drop an image here, or choose a file"),
      imageInput,
      state.image ? h("p", { class: "picked" }, thumbnail(state.image, `query image ${state.imageName}`), ` ${state.imageName}`) : null,
    );
    const image = h("div", { class: "for-image" }, drop);
    const object = h("p", { class: "for-object" }, state.objectId ? `Objects like ${state.objectId}` : "Click “More like this” on a result.");
    const alphaOut = h("output", { for: "search-alpha", id: "alpha-value" }, String(state.alpha));
    const hybrid = h(
      "div",
      { class: "for-hybrid" },
      h("label", { for: "search-alpha" }, "alpha (0: keywords only, 1: vectors only) "),
      h("input", {
        id: "search-alpha",
        type: "range",
        min: "0",
        max: "1",
        step: "0.05",
        value: String(state.alpha),
        oninput: (e) => {
          state.alpha = Number(e.target.value);
          alphaOut.textContent = e.target.value;
        },
      }),
      alphaOut,
      h("label", { for: "search-fusion" }, " fusion "),
      h(
        "select",
        { id: "search-fusion", onchange: (e) => (state.fusionType = e.target.value) },
        ["relativeScoreFusion", "rankedFusion"].map((f) => h("option", { value: f, selected: state.fusionType === f }, f)),
      ),
    );
    const need = NEEDS[state.kind];
    const usable = need === undefined ? [] : collection.vectors.filter((v) => need === null || v.queries.includes(need));
    state.targetVectors = state.targetVectors.filter((name) => usable.some((v) => v.name === name));
    const targets = h(
      "fieldset",
      { class: "targets", hidden: need === undefined },
      h("legend", {}, "targetVectors (none checked: the default vector)"),
      usable.length
        ? usable.map((v) =>
            h(
              "label",
              {},
              h("input", {
                type: "checkbox",
                name: "target",
                value: v.name,
                checked: state.targetVectors.includes(v.name),
                onchange: (e) => {
                  state.targetVectors = e.target.checked ? [...state.targetVectors, v.name] : state.targetVectors.filter((n) => n !== v.name);
                },
              }),
              ` ${v.name}`,
            ),
          )
        : h("span", { class: "muted" }, `no vector of ${collection.name} takes this kind of query`),
    );
    const collectionSelect = h(
      "select",
      {
        id: "search-collection",
        onchange: (e) => {
          state.collection = e.target.value;
          this.app.selectedCollection = e.target.value;
          state.conditions = [];
          state.objectId = "";
          if (state.kind === "nearObject") state.kind = "nearText";
          this.renderForm();
        },
      },
      this.data.collections.map((c) => h("option", { value: c.name, selected: c.name === state.collection }, c.name)),
    );
    clear(
      this.form,
      h("div", { class: "row" }, h("label", { for: "search-collection" }, "Collection"), collectionSelect),
      kindChoice,
      text,
      image,
      object,
      hybrid,
      targets,
      whereFieldset(state, collection, () => this.renderForm()),
      h(
        "div",
        { class: "row" },
        h("label", { for: "search-limit" }, "limit"),
        h("input", { id: "search-limit", type: "number", min: "1", max: String(limits.queryLimitMax), value: String(state.limit), onchange: (e) => (state.limit = Number(e.target.value)) }),
        h("button", { type: "submit", id: "search-run", class: "primary" }, "Search"),
      ),
    );
    this.form.dataset.kind = state.kind;
  }

  setKind(kind) {
    this.state.kind = kind;
    this.renderForm();
    this.form.querySelector(`input[name=kind][value=${kind}]`).focus();
  }

  readImage(file) {
    if (!file) return;
    const most = this.data.limits.maxBodyBytes;
    // Base64 is 4/3 of the bytes, and the request carries the document beside it.
    if (Math.ceil(file.size / 3) * 4 + 4096 > most) {
      this.say(`${file.name} is ${file.size} bytes: as base64 in a request that is above the server's limit of ${most} bytes (server.limits.maxBodyBytes). Choose a smaller image.`, true);
      return;
    }
    const reader = new FileReader();
    reader.onload = () => {
      this.state.image = String(reader.result).split(",", 2)[1];
      this.state.imageName = file.name;
      this.state.kind = "nearImage";
      this.renderForm();
      this.say(`${file.name} is ready: press Search.`);
    };
    reader.onerror = () => this.say(`could not read ${file.name}: ${reader.error}`, true);
    reader.readAsDataURL(file);
  }

  say(message, isError = false) {
    clear(this.status, message);
    this.status.classList.toggle("error", isError);
  }

  search() {
    const state = this.state;
    const collection = this.collection;
    if (["nearText", "bm25", "hybrid"].includes(state.kind) && !state.text.trim()) throw new Error("type a query first");
    if (state.kind === "nearImage" && !state.image) throw new Error("drop or choose an image first");
    if (state.kind === "nearObject" && !state.objectId) throw new Error("click “More like this” on a result first");
    const most = this.data.limits.queryLimitMax;
    if (!Number.isInteger(state.limit) || state.limit < 1 || state.limit > most) throw new Error(`limit must be a whole number from 1 to ${most} (server.limits.queryLimitMax)`);
    const conditions = state.conditions.map((c) => ({ ...c }));
    for (const c of conditions) if (c.operator !== "IsNull" && !c.value.trim()) throw new Error(`the condition on ${c.path} needs a value`);
    return { ...state, collection: collection.name, conditions, fields: collection.properties.map((p) => p.name) };
  }

  async submit(event) {
    event?.preventDefault();
    let search, sent;
    try {
      search = this.search();
      sent = searchDocument(search);
    } catch (error) {
      this.say(error.message, true);
      return;
    }
    this.sent = { search, ...sent };
    this.showQuery();
    this.say("Searching…");
    clear(this.results);
    let body;
    try {
      body = await this.app.api.graphql(sent.query, sent.variables);
    } catch (error) {
      if (error.status !== 401) this.say(error.message, true);
      return;
    }
    if (body.errors?.length) {
      this.say(body.errors.map((e) => e.message).join("; "), true);
      return;
    }
    const hits = body.data?.Get?.[search.collection] || [];
    this.say(`${hits.length} result${hits.length === 1 ? "" : "s"}`);
    clear(this.results, hits.map((hit, i) => this.card(search, hit, i)));
  }

  showQuery() {
    const { search, query, variables } = this.sent;
    const origin = location.origin;
    const withKey = Boolean(this.app.api.key);
    const body = variables ? { query, variables } : { query };
    const snippets = {
      graphql: variables ? `${query}\n\n# variables\n${JSON.stringify(variables)}` : query,
      curl: curlSnippet(origin, body, withKey),
      python: pythonSnippet(origin, searchDocument(search, true).query, withKey, search.collection, this.data.grpcPort),
    };
    // The image is shown shortened (it is copied whole).
    const shown = (text) => (search.image ? text.replaceAll(search.image, `${search.image.slice(0, 24)}…(${search.image.length} characters)`) : text);
    const pre = h("pre", { id: "query-doc", tabindex: "0" }, shown(snippets[this.format]));
    const copied = h("span", { class: "muted", role: "status" });
    const formats = h(
      "select",
      {
        id: "snippet-format",
        "aria-label": "Show the query as",
        onchange: (e) => {
          this.format = e.target.value;
          this.showQuery();
          document.getElementById("snippet-format").focus();
        },
      },
      Object.entries(FORMATS).map(([value, label]) => h("option", { value, selected: value === this.format }, label)),
    );
    this.queryPanel.hidden = false;
    clear(
      this.queryPanel,
      h("h3", {}, "The query sent"),
      h(
        "div",
        { class: "row" },
        formats,
        h("button", { type: "button", id: "copy-query", onclick: async () => (copied.textContent = (await copyText(snippets[this.format], pre)) ? " copied" : " selected: press Ctrl+C") }, "Copy"),
        h("button", { type: "button", onclick: () => this.app.views.graphql.open(query, variables) }, "Open in the editor"),
        copied,
      ),
      pre,
    );
  }

  card(search, hit, index) {
    const collection = this.collection;
    const extra = hit._additional || {};
    const props = collection.properties;
    const images = props.filter((p) => p.type === "BLOB" && hit[p.name]).map((p) => thumbnail(hit[p.name], `${p.name} of ${extra.id}`));
    const texts = props.filter((p) => p.type === "TEXT" && hit[p.name]);
    const others = props.filter((p) => p.type !== "TEXT" && p.type !== "BLOB" && hit[p.name] !== null && hit[p.name] !== undefined);
    const metric = extra.distance !== undefined && extra.distance !== null ? `distance ${Number(extra.distance).toFixed(4)}` : extra.score !== undefined && extra.score !== null ? `score ${Number(extra.score).toFixed(4)}` : "";
    const open = () => showObject(this.app, collection, extra.id);
    return h(
      "li",
      { class: "card", tabindex: "0", dataset: { id: extra.id }, "aria-label": `result ${index + 1}: ${texts[0] ? hit[texts[0].name] : extra.id}`, onkeydown: (e) => this.cardKey(e, open) },
      images.length ? h("div", { class: "thumbs" }, images) : null,
      h(
        "div",
        { class: "card-body" },
        texts.length ? h("h3", {}, hit[texts[0].name]) : h("h3", { class: "mono" }, extra.id),
        texts.slice(1).map((p) => h("p", { class: "text" }, String(hit[p.name]).slice(0, 400))),
        others.length ? h("p", { class: "muted" }, others.map((p) => `${p.name}: ${[hit[p.name]].flat().join(", ")}`).join(" · ")) : null,
        h("p", { class: "metric" }, metric, h("span", { class: "mono muted" }, ` ${extra.id}`)),
        extra.explainScore ? h("details", { class: "explain" }, h("summary", {}, "explainScore"), h("pre", {}, extra.explainScore.replace(/^, /, ""))) : null,
        h(
          "div",
          { class: "row" },
          h("button", { type: "button", class: "open", onclick: open }, "Open"),
          h("button", { type: "button", class: "like", onclick: () => this.moreLikeThis(extra.id) }, "More like this"),
        ),
      ),
    );
  }

  // Enter on a card opens it; its default is stopped, or the dialog's focused close button would take the same key.
  cardKey(event, open) {
    if (event.key !== "Enter" || event.target !== event.currentTarget) return;
    event.preventDefault();
    open();
  }

  moreLikeThis(id) {
    this.state.kind = "nearObject";
    this.state.objectId = id;
    this.renderForm();
    this.submit();
  }

  // Up and down arrows move between result cards.
  moveFocus(event) {
    if (!["ArrowDown", "ArrowUp"].includes(event.key)) return;
    const cards = [...this.results.children];
    const at = cards.findIndex((card) => card.contains(document.activeElement));
    if (at < 0) return;
    event.preventDefault();
    cards[Math.max(0, Math.min(cards.length - 1, at + (event.key === "ArrowDown" ? 1 : -1)))].focus();
  }
}
