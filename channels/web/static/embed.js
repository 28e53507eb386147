// Switchboard chat widget: one script tag puts a launcher bubble and a chat panel on any page.
//
//   <script src="https://bot.example.com/chat/web/embed.js" async
//           data-title="Acme support" data-color="#0b5fff" data-position="right"
//           data-greeting='["Hi! 👋", "Ask me about your order."]'
//           data-prompts="Where is my order?|Talk to a person"></script>
//
// The panel runs the gateway's chat page in an iframe; everything this script adds lives in one
// <switchboard-chat> element's shadow root, styled by a constructed style sheet (no inline
// <style>, no style attributes in markup), so the host page's CSS and a strict CSP are respected.
// JS API: Switchboard.open() .close() .toggle() .reset() .identify(userId, userHash) .init(options)
// .on("answer" | "open" | "close", fn); the host window also gets a "switchboard:answer" event.
"use strict";

(function () {
  if (window.Switchboard && window.Switchboard.version) return; // loaded twice: keep the first

  const script = document.currentScript || document.querySelector("script[src*='/embed.js']");
  const base = new URL("./", script ? script.src : location.href);
  const chatOrigin = base.origin;
  // Filled in by the gateway when it serves this file: the channel's own settings.
  const DEFAULTS = Object.assign({ title: "Chat" }, /*{{defaults}}*/ null);

  const STYLES = `
:host { all: initial; }
.launcher {
  position: fixed; bottom: 20px; z-index: 2147483000;
  width: 56px; height: 56px; border-radius: 50%; border: 0; padding: 0; margin: 0;
  display: flex; align-items: center; justify-content: center; cursor: pointer;
  background: var(--sb-accent, #2f5bea); color: var(--sb-accent-text, #fff);
  box-shadow: 0 4px 14px rgba(0, 0, 0, 0.25); transition: transform 0.15s ease;
}
.launcher:hover { transform: scale(1.05); }
.launcher:focus-visible { outline: 3px solid var(--sb-accent, #2f5bea); outline-offset: 3px; }
.launcher svg { width: 28px; height: 28px; fill: none; stroke: currentColor; stroke-width: 2;
  stroke-linecap: round; stroke-linejoin: round; }
.launcher .when-open { display: none; }
.launcher[aria-expanded="true"] .when-open { display: block; }
.launcher[aria-expanded="true"] .when-closed { display: none; }
.right { right: 20px; }
.left { left: 20px; }
.panel {
  position: fixed; bottom: 88px; z-index: 2147483000;
  width: 400px; height: min(640px, calc(100vh - 112px)); max-height: calc(100dvh - 112px);
  border-radius: 16px; overflow: hidden; background: #fff;
  box-shadow: 0 12px 40px rgba(0, 0, 0, 0.3);
}
.panel[hidden] { display: none; }
iframe { display: block; width: 100%; height: 100%; border: 0; }
.sentinel { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
@media (max-width: 480px), (max-height: 480px) {
  .panel { inset: 0; width: 100%; height: 100%; max-height: none; border-radius: 0; }
  .panel:not([hidden]) ~ .launcher { display: none; }
}
@media (prefers-reduced-motion: reduce) { .launcher { transition: none; } }
`;

  const CHAT_ICON = "M21 15a2 2 0 0 1-2 2H7l-4 4V5a2 2 0 0 1 2-2h14a2 2 0 0 1 2 2z";
  const CLOSE_ICON = "M18 6 6 18M6 6l12 12";

  function list(raw) {
    if (raw == null || raw === "") return undefined;
    if (Array.isArray(raw)) return raw.map(String);
    const text = String(raw).trim();
    if (text.startsWith("[")) {
      try {
        const parsed = JSON.parse(text);
        if (Array.isArray(parsed)) return parsed.map(String);
      } catch (e) {
        /* not JSON: a plain list */
      }
    }
    return text.split("|").map((s) => s.trim()).filter(Boolean);
  }

  function fromDataset(data) {
    return {
      title: data.title,
      color: data.color,
      position: data.position,
      greeting: list(data.greeting),
      prompts: list(data.prompts),
      userId: data.userId,
      userHash: data.userHash,
      open: data.open === "true",
    };
  }

  // Readable text on the chosen colour: black or white, whichever contrasts more.
  function textOn(color, probe) {
    probe.style.color = color;
    const rgb = getComputedStyle(probe).color.match(/\d+(\.\d+)?/g);
    probe.style.color = "";
    if (!rgb) return "#fff";
    const [r, g, b] = rgb.slice(0, 3).map((v) => {
      const c = Number(v) / 255;
      return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4);
    });
    const luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b;
    return luminance > 0.179 ? "#111" : "#fff";
  }

  function svg(path, className) {
    const ns = "http://www.w3.org/2000/svg";
    const node = document.createElementNS(ns, "svg");
    node.setAttribute("viewBox", "0 0 24 24");
    node.setAttribute("aria-hidden", "true");
    node.setAttribute("focusable", "false");
    node.setAttribute("class", className);
    node.appendChild(document.createElementNS(ns, "path")).setAttribute("d", path);
    return node;
  }

  const listeners = { answer: [], open: [], close: [] };
  let widget = null;

  function emit(name, detail) {
    listeners[name].forEach((fn) => {
      try {
        fn(detail);
      } catch (e) {
        setTimeout(() => { throw e; }); // a host's handler error must not break the widget
      }
    });
    window.dispatchEvent(new CustomEvent("switchboard:" + name, { detail: detail }));
  }

  function build(options) {
    const host = document.createElement("switchboard-chat");
    const root = host.attachShadow({ mode: "open" });
    if ("adoptedStyleSheets" in root) {
      const sheet = new CSSStyleSheet();
      sheet.replaceSync(STYLES);
      root.adoptedStyleSheets = [sheet];
    }
    const title = options.title || DEFAULTS.title;
    const side = options.position === "left" ? "left" : "right";

    const panel = document.createElement("div");
    panel.className = "panel " + side;
    panel.id = "switchboard-panel";
    panel.hidden = true;
    panel.setAttribute("role", "dialog");
    panel.setAttribute("aria-modal", "true");
    panel.setAttribute("aria-label", title);
    const start = panel.appendChild(document.createElement("span"));
    const frame = panel.appendChild(document.createElement("iframe"));
    const end = panel.appendChild(document.createElement("span"));
    for (const sentinel of [start, end]) {
      sentinel.className = "sentinel";
      sentinel.tabIndex = 0;
      sentinel.setAttribute("aria-hidden", "true");
    }
    frame.title = title;

    const launcher = document.createElement("button");
    launcher.type = "button";
    launcher.className = "launcher " + side;
    launcher.setAttribute("aria-controls", panel.id);
    launcher.setAttribute("aria-expanded", "false");
    launcher.setAttribute("aria-label", "Open chat: " + title);
    launcher.appendChild(svg(CHAT_ICON, "when-closed"));
    launcher.appendChild(svg(CLOSE_ICON, "when-open"));

    root.append(panel, launcher);
    (document.body || document.documentElement).appendChild(host);
    if (options.color && window.CSS && window.CSS.supports("color", options.color)) {
      host.style.setProperty("--sb-accent", options.color); // CSSOM: allowed under any CSP
      host.style.setProperty("--sb-accent-text", textOn(options.color, launcher));
    }

    const w = { host, panel, frame, launcher, options, ready: false, loaded: false, queue: [] };

    function post(message) {
      if (!w.ready) {
        w.queue.push(message);
        return;
      }
      frame.contentWindow.postMessage(Object.assign({ source: "switchboard-host" }, message), chatOrigin);
    }
    w.post = post;

    window.addEventListener("message", (e) => {
      const data = e.data;
      if (e.origin !== chatOrigin || e.source !== frame.contentWindow || !data || data.source !== "switchboard-chat") return;
      if (data.type === "ready") {
        w.ready = true;
        const o = w.options;
        post({ type: "config", title: o.title, color: o.color, greeting: o.greeting, prompts: o.prompts,
               userId: o.userId, userHash: o.userHash });
        w.queue.splice(0).forEach(post);
        if (!panel.hidden) post({ type: "focus", where: "input" });
      } else if (data.type === "close") {
        close();
      } else if (data.type === "answer") {
        emit("answer", { text: String(data.text || ""), messageId: data.messageId || null });
      }
    });

    // Focus stays in the open panel: Tab past its last control lands on a sentinel, which
    // sends focus back into the chat's first (or, backwards, last) control.
    start.addEventListener("focus", () => focusInside("last"));
    end.addEventListener("focus", () => focusInside("first"));
    launcher.addEventListener("click", toggle);
    root.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && !panel.hidden) close();
    });
    return w;

    function focusInside(where) {
      frame.focus();
      post({ type: "focus", where: where });
    }
  }

  function open() {
    if (!widget || !widget.panel.hidden) return;
    const w = widget;
    if (!w.loaded) {
      w.loaded = true; // the chat loads on first open: nothing is fetched for visitors who never ask
      w.frame.src = new URL("?embed=1", base).href;
    }
    w.panel.hidden = false;
    w.launcher.setAttribute("aria-expanded", "true");
    w.launcher.setAttribute("aria-label", "Close chat");
    w.frame.focus();
    w.post({ type: "opened" });
    w.post({ type: "focus", where: "input" });
    emit("open", {});
  }

  function close() {
    if (!widget || widget.panel.hidden) return;
    widget.panel.hidden = true;
    widget.launcher.setAttribute("aria-expanded", "false");
    widget.launcher.setAttribute("aria-label", "Open chat: " + (widget.options.title || DEFAULTS.title));
    widget.launcher.focus();
    emit("close", {});
  }

  function toggle() {
    if (widget && widget.panel.hidden) open();
    else close();
  }

  function init(options) {
    if (widget) return;
    const ready = () => {
      widget = build(Object.assign({}, options || {}));
      if (options && options.open) open();
      early.splice(0).forEach((call) => call());
    };
    if (document.body) ready();
    else document.addEventListener("DOMContentLoaded", ready, { once: true });
  }

  // Calls made before the widget exists (the script ran in <head>, or before init) wait for it.
  const early = [];
  function whenBuilt(fn) {
    return function () {
      const args = arguments;
      if (widget) fn.apply(null, args);
      else early.push(() => fn.apply(null, args));
    };
  }

  window.Switchboard = Object.freeze({
    version: "1",
    init: init,
    open: whenBuilt(open),
    close: whenBuilt(close),
    toggle: whenBuilt(toggle),
    reset: whenBuilt(() => widget.post({ type: "reset" })),
    identify: whenBuilt((userId, userHash) => {
      widget.options.userId = userId || undefined;
      widget.options.userHash = userHash || undefined;
      if (widget.loaded) widget.post({ type: "identify", userId: userId || null, userHash: userHash || null });
    }),
    on(name, fn) {
      if (listeners[name] && typeof fn === "function") listeners[name].push(fn);
    },
  });

  // data-manual: the site calls Switchboard.init({...}) itself (e.g. once it knows its user).
  if (script && !("manual" in script.dataset)) init(fromDataset(script.dataset));
})();
