// A GraphQL editor: run any document, errors marked at the line the server reports, names completed from introspection.
import { clear, errorBox, h } from "./dom.js";

const INTROSPECTION = "{ __schema { types { name fields { name args { name } } inputFields { name } enumValues { name } } } }";
const KEYWORDS = ["query", "fragment", "on", "true", "false", "null"];
const MAX_SUGGESTIONS = 8;

export class EditorView {
  constructor(app, el) {
    this.app = app;
    this.el = el;
    this.words = [];
    this.errorLines = new Map(); // line -> messages
    this.suggestions = [];
    this.selected = 0;
    this.pending = null; // a document handed over before the view was built
  }

  async show() {
    if (!this.textarea) this.build();
    if (this.pending) {
      this.textarea.value = this.pending.query;
      this.variables.value = this.pending.variables ? JSON.stringify(this.pending.variables, null, 2) : "";
      this.pending = null;
      this.errorLines.clear();
      this.renderGutter();
    }
    try {
      const data = await this.app.catalog();
      if (!this.textarea.value) {
        const first = data.collections[0];
        const field = first.properties.find((p) => p.type === "TEXT")?.name || "";
        this.textarea.value = `{\n  Get {\n    ${first.name}(limit: 3) {\n      ${field}\n      _additional { id }\n    }\n  }\n}\n`;
        this.renderGutter();
      }
      if (!this.words.length) await this.loadWords();
    } catch (error) {
      if (error.status !== 401) clear(this.result, errorBox(error.message));
    }
  }

  open(query, variables) {
    this.pending = { query, variables };
    this.app.go("graphql");
  }

  build() {
    this.gutter = h("ol", { class: "gutter", "aria-hidden": "true" });
    this.textarea = h("textarea", {
      id: "gql-editor",
      spellcheck: "false",
      autocomplete: "off",
      autocapitalize: "off",
      "aria-label": "GraphQL document (Ctrl+Enter runs it; Ctrl+Space completes a name)",
      "aria-describedby": "gql-errors",
      oninput: () => {
        this.renderGutter();
        this.suggest(false);
      },
      onscroll: () => (this.gutter.scrollTop = this.textarea.scrollTop),
      onkeydown: (event) => this.key(event),
      onblur: () => this.hideSuggestions(),
    });
    this.suggestionList = h("ul", { id: "gql-suggestions", role: "listbox", "aria-label": "Completions", hidden: true });
    this.variables = h("textarea", { id: "gql-variables", spellcheck: "false", rows: 3, placeholder: '{"name": "value"}' });
    this.errors = h("ul", { id: "gql-errors", class: "errors", role: "alert" });
    this.result = h("pre", { id: "gql-result", tabindex: "0" });
    clear(
      this.el,
      h("h2", {}, "GraphQL"),
      h("div", { class: "editor" }, this.gutter, this.textarea),
      this.suggestionList,
      h("details", {}, h("summary", {}, "Variables (JSON)"), h("label", { for: "gql-variables", class: "sr-only" }, "Variables as JSON"), this.variables),
      h("div", { class: "row" }, h("button", { type: "button", id: "gql-run", class: "primary", onclick: () => this.run() }, "Run"), h("span", { class: "muted" }, "Ctrl+Enter")),
      this.errors,
      this.result,
    );
    this.renderGutter();
  }

  renderGutter() {
    const count = this.textarea.value.split("\n").length;
    clear(
      this.gutter,
      Array.from({ length: count }, (_, i) => {
        const messages = this.errorLines.get(i + 1);
        return h("li", { class: messages ? "error" : null, title: messages ? messages.join("\n") : null, dataset: { line: String(i + 1) } }, String(i + 1));
      }),
    );
    this.gutter.scrollTop = this.textarea.scrollTop;
  }

  async loadWords() {
    const body = await this.app.api.graphql(INTROSPECTION);
    const words = new Set(KEYWORDS);
    for (const type of body.data?.__schema?.types || []) {
      if (type.name.startsWith("__")) continue;
      words.add(type.name);
      for (const field of type.fields || []) {
        words.add(field.name);
        for (const arg of field.args || []) words.add(arg.name);
      }
      for (const field of type.inputFields || []) words.add(field.name);
      for (const value of type.enumValues || []) words.add(value.name);
    }
    this.words = [...words].sort();
  }

  prefix() {
    const caret = this.textarea.selectionStart;
    const match = /[_A-Za-z][_0-9A-Za-z]*$/.exec(this.textarea.value.slice(0, caret));
    return match ? match[0] : "";
  }

  suggest(always) {
    const prefix = this.prefix();
    if (!always && prefix.length < 2) return this.hideSuggestions();
    const lower = prefix.toLowerCase();
    this.suggestions = this.words.filter((w) => w.toLowerCase().startsWith(lower) && w !== prefix).slice(0, MAX_SUGGESTIONS);
    this.selected = 0;
    if (!this.suggestions.length) return this.hideSuggestions();
    this.renderSuggestions();
  }

  renderSuggestions() {
    this.suggestionList.hidden = false;
    clear(
      this.suggestionList,
      this.suggestions.map((word, i) =>
        h(
          "li",
          { role: "option", "aria-selected": String(i === this.selected), onmousedown: (e) => e.preventDefault(), onclick: () => this.accept(word) },
          word,
        ),
      ),
    );
  }

  hideSuggestions() {
    this.suggestions = [];
    this.suggestionList.hidden = true;
  }

  accept(word) {
    const caret = this.textarea.selectionStart;
    this.textarea.setRangeText(word, caret - this.prefix().length, caret, "end");
    this.hideSuggestions();
    this.renderGutter();
    this.textarea.focus();
  }

  key(event) {
    if ((event.ctrlKey || event.metaKey) && event.key === "Enter") {
      event.preventDefault();
      this.run();
    } else if (event.ctrlKey && event.key === " ") {
      event.preventDefault();
      this.suggest(true);
    } else if (this.suggestions.length) {
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        event.preventDefault();
        const step = event.key === "ArrowDown" ? 1 : -1;
        this.selected = (this.selected + step + this.suggestions.length) % this.suggestions.length;
        this.renderSuggestions();
      } else if (event.key === "Tab" || event.key === "Enter") {
        event.preventDefault();
        this.accept(this.suggestions[this.selected]);
      } else if (event.key === "Escape") {
        event.preventDefault();
        this.hideSuggestions();
      }
    }
  }

  showErrors(errors) {
    this.errorLines.clear();
    const items = errors.map((error) => {
      const at = (error.locations || [])[0];
      if (at) this.errorLines.set(at.line, [...(this.errorLines.get(at.line) || []), error.message]);
      return h("li", { dataset: { line: at ? String(at.line) : "" } }, at ? `Line ${at.line}, column ${at.column}: ${error.message}` : error.message);
    });
    clear(this.errors, items);
    this.renderGutter();
  }

  async run() {
    let variables;
    try {
      variables = this.variables.value.trim() ? JSON.parse(this.variables.value) : undefined;
    } catch (error) {
      this.showErrors([{ message: `the variables are not JSON: ${error.message}` }]);
      return;
    }
    clear(this.result, "Running…");
    let body;
    try {
      body = await this.app.api.graphql(this.textarea.value, variables);
    } catch (error) {
      clear(this.result);
      if (error.status !== 401) this.showErrors([{ message: error.message }]);
      return;
    }
    this.showErrors(body.errors || []);
    // A document that did not parse has no data to show: its errors say it all.
    clear(this.result, body.data === null && body.errors?.length ? "" : JSON.stringify(body.data === undefined ? body : body.data, null, 2));
  }
}
