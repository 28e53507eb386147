// Switchboard web chat: sends a message, streams the answer (UI message stream over SSE) and
// renders it with markdown.js (DOM nodes only, never innerHTML). Standalone, or inside the
// embed.js panel, where frame.js passes the site's settings in through window.SwitchboardChat.
"use strict";

(function () {
  const STORE_KEY = "switchboard-chat:" + location.pathname;
  const MAX_STORED = 100;
  const SESSION_ID = /^[A-Za-z0-9_-]{8,64}$/;

  const $ = (id) => document.getElementById(id);
  const transcript = $("transcript");
  const form = $("composer");
  const input = $("message");
  const sendButton = $("send");
  const newButton = $("new-conversation");
  const promptsBox = $("prompts");
  const statusLine = $("status");
  const render = window.SwitchboardMarkdown.render;

  let state = loadState();
  let busy = false;
  let greeting = listOf($("chat").dataset.greeting);
  let prompts = listOf($("chat").dataset.prompts);
  // A signed identity from the embedding site: {userId, userHash}. While it is verified the
  // transcript lives at the agent (GET history), not in this browser.
  let identity = null;
  let verified = false;
  let olderCursor = null;

  // -- state ----------------------------------------------------------------------------------
  function listOf(raw) {
    try {
      const value = typeof raw === "string" ? JSON.parse(raw) : raw;
      if (typeof value === "string") return value.trim() ? [value] : [];
      return Array.isArray(value) ? value.filter((v) => typeof v === "string" && v.trim()).slice(0, 8) : [];
    } catch (e) {
      return [];
    }
  }

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
    // A verified visitor's transcript is read from the agent on every open: keep only the session.
    const kept = verified ? { sessionId: state.sessionId, messages: [] } : state;
    try {
      localStorage.setItem(STORE_KEY, JSON.stringify(kept));
    } catch (e) {
      /* private mode, full, or blocked in a third-party frame: the chat still works */
    }
  }

  function withIdentity(body) {
    if (identity) {
      body.userId = identity.userId;
      body.userHash = identity.userHash;
    }
    return body;
  }

  // -- transcript -------------------------------------------------------------------------------
  function el(tag, className) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    return node;
  }

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
    else render(message.text, bubble);
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
        body: JSON.stringify(withIdentity({ sessionId: state.sessionId, messageId: message.messageId, feedback: next })),
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
    if (olderCursor) {
      const more = transcript.appendChild(el("button", "secondary older"));
      more.type = "button";
      more.textContent = "Show earlier messages";
      more.addEventListener("click", loadOlder);
    }
    // The greeting opens every conversation; it is the site's text, never sent to the agent.
    greeting.forEach((text) => addBubble({ role: "assistant", text: text }).classList.add("greeting"));
    if (!state.messages.length && !greeting.length) {
      const empty = transcript.appendChild(el("p", "empty"));
      empty.id = "empty";
      empty.textContent = "Ask anything to start the conversation.";
    }
    state.messages.forEach((message) => addFeedback(message, addBubble(message)));
    renderPrompts();
    scrollDown(true);
  }

  function renderPrompts() {
    promptsBox.textContent = "";
    const asked = state.messages.some((m) => m.role === "user");
    promptsBox.hidden = asked || !prompts.length;
    if (promptsBox.hidden) return;
    prompts.forEach((text) => {
      const button = promptsBox.appendChild(el("button", "prompt"));
      button.type = "button";
      button.textContent = text;
      button.addEventListener("click", () => {
        if (!busy) send(text);
      });
    });
  }

  function setStatus(text, isError) {
    statusLine.textContent = text || "";
    statusLine.classList.toggle("error", Boolean(isError));
  }

  function setBusy(value) {
    busy = value;
    sendButton.disabled = value;
    newButton.disabled = value;
    promptsBox.querySelectorAll("button").forEach((b) => (b.disabled = value));
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
    renderPrompts();
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
      const response = await fetch("messages", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(withIdentity({ sessionId: state.sessionId, message: text })),
      });
      if (!response.ok || !response.body) throw new Error(await refusal(response));
      let parts = 0;
      for await (const data of readEvents(response.body)) {
        if (data === "[DONE]") break;
        const event = JSON.parse(data);
        if (event.type === "text-start") {
          // A second text part (a notice, then the answer) starts a new paragraph.
          if (parts++ && answer.text) answer.text += "\n\n";
        } else if (event.type === "text-delta") answer.text += event.delta;
        else if (event.type === "error") throw new Error(event.errorText || "The answer failed.");
        else if (event.type === "finish") {
          finished = true;
          const meta = event.messageMetadata || {};
          answer.error = Boolean(meta.error);
          if (typeof meta.messageId === "string") answer.messageId = meta.messageId;
          verified = Boolean(meta.verified);
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
        if (!answer.error) {
          const detail = { text: answer.text, messageId: answer.messageId || null };
          document.dispatchEvent(new CustomEvent("switchboard-chat:answer", { detail: detail }));
        }
      } else {
        bubble.remove(); // finished without words (a person took the conversation over)
      }
      scrollDown(false);
      setBusy(false);
      input.focus();
    }
  }

  async function fetchHistory(cursor) {
    const query = new URLSearchParams({ sessionId: state.sessionId, limit: "20" });
    if (cursor) query.set("cursor", cursor);
    const headers = {};
    if (identity) {
      headers["X-Switchboard-User-Id"] = encodeURIComponent(identity.userId);
      headers["X-Switchboard-User-Hash"] = identity.userHash;
    }
    const response = await fetch("history?" + query, { headers: headers, cache: "no-store" });
    if (!response.ok) throw new Error(await refusal(response));
    return response.json();
  }

  function fromHistory(page) {
    return page.messages.map((m) =>
      m.role === "assistant"
        ? { role: "assistant", text: m.text, messageId: m.id || undefined, feedback: m.feedback || null }
        : { role: "user", text: m.text }
    );
  }

  // A verified visitor's thread comes from the agent, so it is the same on every device.
  let generation = 0; // the newest identity load; an older one that answers late is ignored
  // ``quiet``: refresh what is shown (the panel opened again) without blanking it first.
  async function loadIdentity(quiet) {
    const mine = ++generation;
    if (!identity) {
      olderCursor = null;
      verified = false;
      renderAll();
      return;
    }
    setBusy(true); // nothing is sent into a thread that is still loading
    if (!quiet) {
      olderCursor = null;
      renderAll();
      setStatus("Loading the conversation…");
    }
    try {
      const page = await fetchHistory(null);
      if (mine !== generation) return;
      verified = Boolean(page.verified);
      if (verified) {
        state.messages = fromHistory(page);
        olderCursor = page.cursor || null;
        saveState();
        setStatus("");
      } else {
        state.messages = loadState().messages; // anonymous after all: this browser's transcript
        setStatus(page.identityNotice || "This chat is anonymous.", true);
      }
    } catch (err) {
      if (mine === generation) setStatus(err instanceof Error ? err.message : String(err), true);
    } finally {
      if (mine === generation) {
        setBusy(false);
        renderAll();
      }
    }
  }

  async function loadOlder() {
    if (!olderCursor || !verified) return;
    try {
      const page = await fetchHistory(olderCursor);
      olderCursor = page.cursor || null;
      state.messages = fromHistory(page).concat(state.messages);
      renderAll();
      transcript.scrollTop = 0;
    } catch (err) {
      setStatus(err instanceof Error ? err.message : String(err), true);
    }
  }

  async function newConversation() {
    if (busy) return;
    if (verified) {
      // On the agent's side, so every device of this visitor starts afresh too.
      try {
        const response = await fetch("new", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify(withIdentity({ sessionId: state.sessionId })),
        });
        if (!response.ok) throw new Error(await refusal(response));
      } catch (err) {
        setStatus(err instanceof Error ? err.message : String(err), true);
        return;
      }
      state = { sessionId: state.sessionId, messages: [] };
    } else {
      state = { sessionId: randomId(), messages: [] };
    }
    olderCursor = null;
    saveState();
    renderAll();
    setStatus("Started a new conversation.");
    input.focus();
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

  newButton.addEventListener("click", newConversation);

  // -- for frame.js (the page inside the embed.js panel) --------------------------------------
  function identityOf(userId, userHash) {
    return userId && userHash ? { userId: String(userId), userHash: String(userHash) } : null;
  }

  window.SwitchboardChat = Object.freeze({
    // Site settings (greeting, prompts, signed identity), then the transcript is loaded.
    start(config) {
      if (Array.isArray(config.greeting) || typeof config.greeting === "string") greeting = listOf(config.greeting);
      if (Array.isArray(config.prompts) || typeof config.prompts === "string") prompts = listOf(config.prompts);
      identity = identityOf(config.userId, config.userHash);
      return loadIdentity();
    },
    identify(userId, userHash) {
      identity = identityOf(userId, userHash);
      // Signed out: back to this browser's anonymous transcript; signed in: the agent's copy.
      state = { sessionId: state.sessionId, messages: identity ? [] : loadState().messages };
      return loadIdentity();
    },
    reset: newConversation,
    // The panel opened again: a signed-in visitor may have written from another device since.
    refresh() {
      if (identity && verified && !busy) loadIdentity(true);
    },
  });

  renderAll();
})();
