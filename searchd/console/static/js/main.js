// The console: one page, four views chosen by the URL's hash, every data call through Api.
import { Api } from "./api.js";
import { CollectionsView } from "./collections.js";
import { ConfigView } from "./config.js";
import { EditorView } from "./editor.js";
import { SearchView } from "./search.js";

const VIEWS = ["collections", "search", "graphql", "config"];

class Console {
  constructor() {
    this.api = new Api((message) => this.showLogin(message));
    this.catalogPromise = null;
    this.selectedCollection = null; // shared by the collections and search views
    this.views = {
      collections: new CollectionsView(this, document.getElementById("view-collections")),
      search: new SearchView(this, document.getElementById("view-search")),
      graphql: new EditorView(this, document.getElementById("view-graphql")),
      config: new ConfigView(this, document.getElementById("view-config")),
    };
    this.current = null;
    this.login = document.getElementById("login");
    this.forget = document.getElementById("forget-key");
    document.getElementById("login-form").addEventListener("submit", (event) => this.useKey(event));
    this.forget.addEventListener("click", () => {
      this.api.forgetKey();
      this.showLogin("The key is forgotten: this tab no longer sends one.");
    });
    window.addEventListener("hashchange", () => this.route());
    document.addEventListener("keydown", (event) => this.shortcut(event));
    this.forget.hidden = !this.api.key;
    this.route();
  }

  // The catalog as the console sees it; reloaded when a view asks (a reload may have changed it).
  catalog(fresh = false) {
    if (fresh || !this.catalogPromise) {
      this.catalogPromise = this.api.get("/v1/console/collections");
      this.catalogPromise.catch(() => {
        this.catalogPromise = null;
      });
    }
    return this.catalogPromise;
  }

  go(view) {
    if (location.hash === `#${view}`) this.route();
    else location.hash = `#${view}`;
  }

  route() {
    const name = VIEWS.includes(location.hash.slice(1)) ? location.hash.slice(1) : "collections";
    this.login.hidden = true;
    for (const link of document.querySelectorAll("nav a")) {
      if (link.dataset.view === name) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    for (const [key, view] of Object.entries(this.views)) {
      view.el.hidden = key !== name;
      if (key !== name && view.hide) view.hide();
    }
    this.current = this.views[name];
    this.current.show();
  }

  showLogin(message) {
    for (const view of Object.values(this.views)) {
      view.el.hidden = true;
      if (view.hide) view.hide();
    }
    this.catalogPromise = null;
    this.forget.hidden = !this.api.key;
    document.getElementById("login-reason").textContent = message;
    this.login.hidden = false;
    document.getElementById("login-key").focus();
  }

  useKey(event) {
    event.preventDefault();
    const input = document.getElementById("login-key");
    this.api.setKey(input.value.trim());
    input.value = "";
    this.forget.hidden = false;
    this.route();
  }

  // Alt+1..4 switch views; "/" jumps to the search box (unless typing somewhere already).
  shortcut(event) {
    const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement?.tagName);
    if (event.altKey && !event.ctrlKey && !event.metaKey && /^[1-4]$/.test(event.key)) {
      event.preventDefault();
      this.go(VIEWS[Number(event.key) - 1]);
    } else if (event.key === "/" && !typing && !event.ctrlKey && !event.metaKey) {
      event.preventDefault();
      this.go("search");
      this.views.search.focusQuery();
    }
  }
}

window.searchdConsole = new Console();
