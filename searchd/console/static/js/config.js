// Config and reloads: the applied revision, the last reload and its plan, and live progress of background rebuilds.
import { clear, errorBox, formatSeconds, formatTime, h } from "./dom.js";

const POLL_MS = 1000;
const FAILED = new Set(["invalid", "refused", "failed", "error"]);

export class ConfigView {
  constructor(app, el) {
    this.app = app;
    this.el = el;
    this.timer = null;
    this.active = false;
    this.revision = null;
    this.reloadOutcome = null;
  }

  show() {
    this.active = true;
    if (!this.el.childElementCount) clear(this.el, h("h2", {}, "Config and reloads"), h("p", {}, "Loading…"));
    this.poll();
  }

  hide() {
    this.active = false;
    clearTimeout(this.timer);
  }

  async poll() {
    clearTimeout(this.timer);
    if (!this.active) return;
    let wait = POLL_MS;
    try {
      const status = await this.app.api.get("/v1/config/status");
      if (!this.active) return;
      if (status.revision !== this.revision) {
        this.revision = status.revision;
        this.app.catalogPromise = null; // the collections changed: the next view that needs them asks again
      }
      this.render(status);
    } catch (error) {
      if (error.status === 401) return; // the login is shown; polling starts again with the view
      if (error.status === 429) wait = Math.max(POLL_MS, Number(error.retryAfter || 1) * 1000);
      clear(this.el, h("h2", {}, "Config and reloads"), errorBox(error.message));
    }
    // Poll only while the view is shown and the tab visible: an idle console sends nothing.
    this.timer = setTimeout(() => (document.hidden ? this.waitVisible() : this.poll()), wait);
  }

  waitVisible() {
    document.addEventListener("visibilitychange", () => this.poll(), { once: true });
  }

  async reloadNow(button) {
    button.disabled = true;
    try {
      const outcome = await this.app.api.post("/v1/config/reload");
      this.reloadOutcome = { ok: true, message: `reload: ${outcome.result}` };
    } catch (error) {
      this.reloadOutcome = { ok: false, message: error.message };
    }
    button.disabled = false;
    this.poll();
  }

  render(status) {
    const focused = document.activeElement?.id; // the view is drawn anew each poll: keep the keyboard's place
    const last = status.lastReload;
    const reloadButton = h("button", { type: "button", id: "reload-now", onclick: (e) => this.reloadNow(e.currentTarget) }, "Reload the config files now");
    clear(
      this.el,
      h("h2", {}, "Config and reloads"),
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, "Config"),
        h("dd", { class: "mono" }, status.configPath),
        h("dt", {}, "Applied revision"),
        h("dd", { id: "revision", class: "mono" }, status.revision || "–"),
        h("dt", {}, "Applied at"),
        h("dd", {}, formatTime(status.appliedAt)),
      ),
      h("div", { class: "row" }, reloadButton, this.reloadOutcome ? h("span", { class: this.reloadOutcome.ok ? "muted" : "error", role: "status" }, this.reloadOutcome.message) : null),
      h("h3", {}, "Background rebuilds"),
      status.rebuilds.length ? h("ul", { class: "rebuilds" }, status.rebuilds.map((r) => this.rebuild(r))) : h("p", { class: "muted" }, "None running or recent."),
      h("h3", {}, "Last reload"),
      last ? this.lastReload(last) : h("p", { class: "muted" }, "No reload yet."),
    );
    if (focused) document.getElementById(focused)?.focus();
  }

  rebuild(r) {
    const failed = r.state === "failed" || r.failed > 0 || r.error;
    const label = `${r.collection}.${r.target}: ${r.kind}, ${r.state}`;
    return h(
      "li",
      { class: `rebuild${failed ? " failed" : ""}`, dataset: { target: `${r.collection}.${r.target}`, state: r.state } },
      h("div", {}, h("strong", {}, label)),
      h("progress", { max: String(Math.max(1, r.total)), value: String(r.done), "aria-label": label }, `${r.done}/${r.total}`),
      h("div", { class: "muted" }, `${r.done} of ${r.total} objects · ${r.ratePerSecond}/s · ETA ${formatSeconds(r.etaSeconds)}`, r.failed ? h("span", { class: "error" }, ` · ${r.failed} failed`) : null),
      r.error ? errorBox(r.error) : null,
    );
  }

  lastReload(last) {
    const failed = FAILED.has(last.result);
    const changes = last.plan?.changes || [];
    return h(
      "div",
      { class: `last-reload${failed ? " failed" : ""}`, dataset: { result: last.result } },
      h("p", {}, h("strong", { class: failed ? "error" : "" }, last.result), ` · ${last.trigger} · ${formatTime(last.at)}`),
      last.errors.length ? h("ul", { class: "errors", role: "alert" }, last.errors.map((e) => h("li", {}, e))) : null,
      changes.length
        ? h(
            "table",
            { class: "plan" },
            h("caption", {}, "The plan"),
            h("thead", {}, h("tr", {}, ["kind", "action", "what", "summary"].map((t) => h("th", { scope: "col" }, t)))),
            h("tbody", {}, changes.map((c) => h("tr", {}, h("td", {}, c.kind), h("td", {}, c.action), h("td", { class: "mono" }, c.address), h("td", {}, c.summary)))),
          )
        : h("p", { class: "muted" }, "Nothing changed."),
    );
  }
}
