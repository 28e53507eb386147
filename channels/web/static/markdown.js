// Switchboard web chat: the agent's Markdown as DOM nodes. Every piece of agent text reaches the
// page through textContent / createTextNode only, never innerHTML, so it can never become markup.
"use strict";

(function () {
  const SAFE_URL = /^(https?:|mailto:)/i;

  function el(tag, className) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    return node;
  }

  const INLINE = new RegExp(
    [
      "(`+)([^`]|[^`][\\s\\S]*?[^`])\\1(?!`)", // 1-2 code
      "\\*\\*([^*\\s](?:[\\s\\S]*?\\S)?)\\*\\*", // 3 bold
      "__([^_\\s](?:[\\s\\S]*?\\S)?)__", // 4 bold
      "~~([^~\\s](?:[\\s\\S]*?\\S)?)~~", // 5 strike
      "\\*([^*\\s](?:[\\s\\S]*?[^\\s*])?)\\*", // 6 italic
      "_([^_\\s](?:[\\s\\S]*?[^\\s_])?)_(?![A-Za-z0-9])", // 7 italic
      "\\[([^\\]\\n]+)\\]\\(\\s*([^()\\s]+)\\s*\\)", // 8-9 link
      "(https?://[^\\s<>()\"']+[^\\s<>()\"'.,;:!?])", // 10 bare URL
    ].join("|"),
    "g"
  );

  function safeLink(url, into) {
    if (!SAFE_URL.test(url)) return null;
    const a = el("a");
    a.href = url;
    if (!/^(https?:|mailto:)$/.test(a.protocol)) return null;
    a.target = "_blank";
    a.rel = "noopener noreferrer nofollow";
    into.appendChild(a);
    return a;
  }

  function inline(text, into, inLink) {
    const re = new RegExp(INLINE.source, "g"); // own lastIndex: this function recurses
    let last = 0;
    let m;
    while ((m = re.exec(text))) {
      const underscore = m[4] !== undefined || m[7] !== undefined;
      if (underscore && m.index > 0 && /[A-Za-z0-9]/.test(text[m.index - 1])) {
        re.lastIndex = m.index + 1; // snake_case is not emphasis
        continue;
      }
      into.appendChild(document.createTextNode(text.slice(last, m.index)));
      last = re.lastIndex;
      if (m[2] !== undefined) {
        into.appendChild(el("code")).textContent = m[2];
      } else if (m[3] !== undefined || m[4] !== undefined) {
        inline(m[3] !== undefined ? m[3] : m[4], into.appendChild(el("strong")), inLink);
      } else if (m[5] !== undefined) {
        inline(m[5], into.appendChild(el("s")), inLink);
      } else if (m[6] !== undefined || m[7] !== undefined) {
        inline(m[6] !== undefined ? m[6] : m[7], into.appendChild(el("em")), inLink);
      } else if (m[8] !== undefined) {
        const a = inLink ? null : safeLink(m[9], into); // links never nest
        inline(m[8], a || into, inLink || Boolean(a));
      } else {
        const a = inLink ? null : safeLink(m[10], into);
        (a || into).appendChild(document.createTextNode(m[10]));
      }
    }
    into.appendChild(document.createTextNode(text.slice(last)));
  }

  const FENCE = /^\s*(```|~~~)/;
  const HEADING = /^(#{1,6})\s+(.*?)(?:\s+#+)?\s*$/;
  const ITEM = /^\s*([-*+]|\d{1,9}[.)])\s+(.*)$/;

  function renderMarkdown(markdown, into) {
    const lines = markdown.replace(/\r\n?/g, "\n").split("\n");
    let para = [];
    const flush = () => {
      if (!para.length) return;
      const p = into.appendChild(el("p"));
      para.forEach((line, k) => {
        if (k) p.appendChild(el("br"));
        inline(line, p);
      });
      para = [];
    };
    let i = 0;
    while (i < lines.length) {
      const line = lines[i];
      let m;
      if ((m = FENCE.exec(line))) {
        flush();
        const code = [];
        for (i++; i < lines.length && !lines[i].trim().startsWith(m[1]); i++) code.push(lines[i]);
        i++;
        into.appendChild(el("pre")).appendChild(el("code")).textContent = code.join("\n");
      } else if ((m = HEADING.exec(line))) {
        flush();
        inline(m[2], into.appendChild(el("h" + Math.min(m[1].length + 1, 4))));
        i++;
      } else if ((m = ITEM.exec(line))) {
        flush();
        const ordered = /\d/.test(m[1]);
        const list = into.appendChild(el(ordered ? "ol" : "ul"));
        if (ordered && parseInt(m[1], 10) !== 1) list.start = parseInt(m[1], 10);
        while (i < lines.length && (m = ITEM.exec(lines[i])) && /\d/.test(m[1]) === ordered) {
          inline(m[2], list.appendChild(el("li")));
          i++;
        }
      } else if (!line.trim()) {
        flush();
        i++;
      } else {
        para.push(line);
        i++;
      }
    }
    flush();
  }

  window.SwitchboardMarkdown = Object.freeze({ render: renderMarkdown });
})();
