// Switchboard web chat: sends a message, streams the answer (UI message stream over SSE) and
// renders the agent's Markdown safely. Every piece of agent text reaches the page through
// textContent / createTextNode only, never innerHTML, so it can never become markup.
"use strict";

(function () {
  const API = "messages";
  const STORE_KEY = "switchboard-chat:" + location.pathname;
  const MAX_STORED = 100;
  const SESSION_ID = /^[A-Za-z0-9_-]{8,64}$/;
  const SAFE_URL = /^(https?:|mailto:)/i;

  const $ = (id) => document.getElementById(id);
  const transcript = $("transcript");
  const form = $("composer");
  const input = $("message");
  const sendButton = $("send");
  const newButton = $("new-conversation");
  const statusLine = $("status");

  let state = loadState();
  let busy = false;

  // -- state ----------------------------------------------------------------------------------
  function randomId() {
    // crypto.randomUUID needs a secure context; getRandomValues works on plain http too.
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function loadState() {
    try {
      const saved = JSON.parse(localStorage.getItem(STORE_KEY) || "null");
      if (saved && SESSION_ID.test(saved.sessionId) && Array.isArray(saved.messages)) return saved;
    } catch (e) {
      /* unreadable storage: start afresh */
    }
    return { sessionId: randomId(), messages: [] };
  }

  function saveState() {
    state.messages = state.messages.slice(-MAX_STORED);
    try {
      localStorage.setItem(STORE_KEY, JSON.stringify(state));
    } catch (e) {
      /* private mode or full: the chat still works, it just is not remembered */
    }
  }

  // -- safe Markdown ----------------------------------------------------------------------------
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

  // -- transcript -------------------------------------------------------------------------------
  // Follow the growing answer unless the reader scrolled up to read something earlier.
  let follow = true;
  transcript.addEventListener("scroll", () => {
    follow = transcript.scrollHeight - transcript.scrollTop - transcript.clientHeight < 40;
  });

  function scrollDown(force) {
    if (force || follow) transcript.scrollTop = transcript.scrollHeight;
  }

  function fill(bubble, message) {
    bubble.textContent = "";
    bubble.classList.toggle("error", Boolean(message.error));
    if (message.role === "user") bubble.textContent = message.text;
    else renderMarkdown(message.text, bubble);
  }

  function addBubble(message) {
    const empty = $("empty");
    if (empty) empty.remove();
    const bubble = transcript.appendChild(el("div", "msg " + message.role));
    fill(bubble, message);
    scrollDown(true);
    return bubble;
  }

  function showTyping(bubble) {
    bubble.textContent = "";
    const dots = bubble.appendChild(el("span", "typing"));
    dots.setAttribute("aria-hidden", "true");
    for (let k = 0; k < 3; k++) dots.appendChild(el("span"));
    bubble.appendChild(el("span", "visually-hidden")).textContent = "The assistant is typing…";
  }

  const THUMBS = {
    positive: ["Good answer", "M14 9V5a3 3 0 0 0-3-3l-4 9v11h11.28a2 2 0 0 0 2-1.7l1.38-9a2 2 0 0 0-2-2.3zM7 22H4a2 2 0 0 1-2-2v-7a2 2 0 0 1 2-2h3"],
    negative: ["Bad answer", "M10 15v4a3 3 0 0 0 3 3l4-9V2H5.72a2 2 0 0 0-2 1.7l-1.38 9a2 2 0 0 0 2 2.3zm7-13h2.67A2.31 2.31 0 0 1 22 4v7a2.31 2.31 0 0 1-2.33 2H17"],
  };

  function icon(path) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.appendChild(document.createElementNS(ns, "path")).setAttribute("d", path);
    return svg;
  }

  function addFeedback(message, bubble) {
    if (!message.messageId || message.error) return;
    const row = el("div", "feedback");
    row.setAttribute("role", "group");
    row.setAttribute("aria-label", "Rate this answer");
    for (const value of ["positive", "negative"]) {
      const button = row.appendChild(el("button", "vote"));
      button.type = "button";
      button.dataset.value = value;
      button.title = THUMBS[value][0];
      button.setAttribute("aria-label", THUMBS[value][0]);
      button.setAttribute("aria-pressed", String(message.feedback === value));
      button.appendChild(icon(THUMBS[value][1]));
      button.addEventListener("click", () => vote(message, value, row));
    }
    bubble.after(row);
  }

  async function vote(message, value, row) {
    const next = message.feedback === value ? null : value; // a second click takes it back
    try {
      const response = await fetch("feedback", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ sessionId: state.sessionId, messageId: message.messageId, feedback: next }),
      });
      if (!response.ok) throw new Error(await refusal(response));
      message.feedback = next;
      saveState();
      row.querySelectorAll("button").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.value === next)));
      setStatus(next ? "Thanks for the feedback." : "Feedback removed.");
    } catch (err) {
      setStatus(err instanceof Error ? err.message : String(err), true);
    }
  }

  function renderAll() {
    transcript.textContent = "";
    if (!state.messages.length) {
      const empty = transcript.appendChild(el("p", "empty"));
      empty.id = "empty";
      empty.textContent = "Ask anything to start the conversation.";
    }
    state.messages.forEach((message) => addFeedback(message, addBubble(message)));
    scrollDown(true);
  }

  function setStatus(text, isError) {
    statusLine.textContent = text || "";
    statusLine.classList.toggle("error", Boolean(isError));
  }

  function setBusy(value) {
    busy = value;
    sendButton.disabled = value;
    newButton.disabled = value;
  }

  // -- the API ----------------------------------------------------------------------------------
  async function* readEvents(body) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
      let end;
      while ((end = /\r?\n\r?\n/.exec(buffer))) {
        const block = buffer.slice(0, end.index);
        buffer = buffer.slice(end.index + end[0].length);
        const data = block
          .split(/\r?\n/)
          .filter((l) => l.startsWith("data:"))
          .map((l) => l.slice(5).replace(/^ /, ""))
          .join("\n");
        if (data) yield data;
      }
      if (done) return;
    }
  }

  async function refusal(response) {
    try {
      const body = await response.json();
      if (body && body.error && body.error.message) return body.error.message;
    } catch (e) {
      /* not our JSON error */
    }
    return "The chat is unavailable right now (HTTP " + response.status + ").";
  }

  async function send(text) {
    setBusy(true);
    setStatus("");
    const question = { role: "user", text: text };
    state.messages.push(question);
    saveState();
    addBubble(question);
    const answer = { role: "assistant", text: "" };
    const bubble = addBubble(answer);
    bubble.setAttribute("aria-busy", "true");
    showTyping(bubble);
    let pending = false;
    const paint = () => {
      pending = false;
      fill(bubble, answer);
      scrollDown(false);
    };
    let finished = false;
    try {
      const response = await fetch(API, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ sessionId: state.sessionId, message: text }),
      });
      if (!response.ok || !response.body) throw new Error(await refusal(response));
      let parts = 0;
      for await (const data of readEvents(response.body)) {
        if (data === "[DONE]") break;
        const event = JSON.parse(data);
        if (event.type === "text-start") {
          // A second text part (rare) starts a new paragraph of the same answer.
          if (parts++ && answer.text) answer.text += "\n\n";
        } else if (event.type === "text-delta") answer.text += event.delta;
        else if (event.type === "error") throw new Error(event.errorText || "The answer failed.");
        else if (event.type === "finish") {
          finished = true;
          const meta = event.messageMetadata || {};
          answer.error = Boolean(meta.error);
          if (typeof meta.messageId === "string") answer.messageId = meta.messageId;
        }
        if (event.type === "text-delta" && !pending) {
          pending = true;
          requestAnimationFrame(paint);
        }
      }
      if (!finished) throw new Error("The answer was cut off. Please try again.");
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      if (answer.text) setStatus(reason, true);
      else {
        answer.text = reason;
        answer.error = true;
      }
    } finally {
      bubble.removeAttribute("aria-busy");
      if (answer.text) {
        fill(bubble, answer);
        addFeedback(answer, bubble);
        state.messages.push(answer);
        saveState();
      } else {
        bubble.remove(); // finished without words (a person took the conversation over)
      }
      scrollDown(false);
      setBusy(false);
      input.focus();
    }
  }

  // -- controls ---------------------------------------------------------------------------------
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text || busy) return;
    input.value = "";
    input.style.height = "";
    send(text);
  });

  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      form.requestSubmit();
    }
  });

  input.addEventListener("input", () => {
    input.style.height = "auto";
    input.style.height = input.scrollHeight + 2 + "px";
  });

  newButton.addEventListener("click", () => {
    if (busy) return;
    state = { sessionId: randomId(), messages: [] };
    saveState();
    renderAll();
    setStatus("Started a new conversation.");
    input.focus();
  });

  renderAll();
})();
