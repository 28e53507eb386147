// Switchboard web chat inside the embed.js panel (the page opened with ?embed=1 in an iframe):
// the site's settings come in and events go out by postMessage, only ever with the parent page
// (which the page's CSP frame-ancestors limits to the channel's allowed_origins).
"use strict";

(function () {
  if (window.parent === window || !new URLSearchParams(location.search).has("embed")) return;
  const CONFIG_WAIT_MS = 3000;
  const chat = window.SwitchboardChat;
  const $ = (id) => document.getElementById(id);

  function tellHost(message) {
    window.parent.postMessage(Object.assign({ source: "switchboard-chat" }, message), "*");
  }

  function focusables() {
    return Array.from(document.querySelectorAll("button, textarea, [tabindex='0'], a[href]")).filter(
      (node) => !node.disabled && !node.hidden && node.getClientRects().length
    );
  }

  // Black or white text on the site's colour, whichever contrasts more (WCAG relative luminance).
  function textOn(color) {
    const probe = document.body.appendChild(document.createElement("span"));
    probe.style.color = color;
    const rgb = (getComputedStyle(probe).color.match(/\d+(\.\d+)?/g) || []).slice(0, 3).map((v) => {
      const c = Number(v) / 255;
      return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4);
    });
    probe.remove();
    if (rgb.length < 3) return "#fff";
    return 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2] > 0.179 ? "#111" : "#fff";
  }

  function applyLook(config) {
    if (typeof config.title === "string" && config.title.trim()) {
      $("chat-title").textContent = config.title;
      document.title = config.title;
    }
    if (typeof config.color === "string" && CSS.supports("color", config.color)) {
      document.documentElement.style.setProperty("--accent", config.color);
      document.documentElement.style.setProperty("--accent-text", textOn(config.color));
    }
  }

  document.documentElement.classList.add("embedded");
  const closeButton = $("close-chat");
  closeButton.hidden = false;
  closeButton.addEventListener("click", () => tellHost({ type: "close" }));
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape") tellHost({ type: "close" });
  });
  document.addEventListener("switchboard-chat:answer", (e) => tellHost(Object.assign({ type: "answer" }, e.detail)));

  let started = false;
  window.addEventListener("message", (e) => {
    const data = e.data;
    if (e.source !== window.parent || !data || data.source !== "switchboard-host") return;
    if (data.type === "config") {
      applyLook(data);
      started = true;
      chat.start(data);
    } else if (data.type === "identify") {
      chat.identify(data.userId, data.userHash);
    } else if (data.type === "opened") {
      chat.refresh();
    } else if (data.type === "reset") {
      chat.reset();
    } else if (data.type === "focus") {
      const nodes = focusables();
      const target = data.where === "last" ? nodes[nodes.length - 1] : data.where === "first" ? nodes[0] : $("message");
      if (target) target.focus();
    }
  });
  tellHost({ type: "ready" });
  // Opened on its own rather than by embed.js: after a moment, go on as an anonymous chat.
  setTimeout(() => started || chat.start({}), CONFIG_WAIT_MS);
})();
