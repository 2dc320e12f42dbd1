/*
 * Support assistant web chat widget: one <script> tag, no build step, no dependencies.
 *
 *   <script src="https://assistant.example.com/widget.js" defer
 *           data-site-key="pk_..." data-title="Parcelo support" data-color="#0b6e4f"></script>
 *
 * Data attributes: data-server (default: where widget.js came from), data-site-key (a public site key,
 * see docs/server.md; never put the secret API key in a page), data-title, data-color (accent),
 * data-text-color (text on the accent), data-greeting, data-open ("true": open on load).
 *
 * It streams replies from POST /v1/chat with Accept: text/event-stream (events start, chunk, reset,
 * final, error), shows the handoff state, keeps the conversation id in localStorage and shows the
 * stored history on reload (GET /v1/conversations/<id>). Every text is set with textContent: model,
 * FAQ and customer text can never become HTML. The UI lives in a shadow root, so page styles do not
 * leak in or out; the message list is an aria-live log.
 */
(function () {
  "use strict";

  var script = document.currentScript;
  if (!script) {
    return;
  }
  var data = script.dataset;
  var cfg = {
    server: (data.server || new URL(script.src, location.href).origin).replace(/\/+$/, ""),
    siteKey: data.siteKey || "",
    title: data.title || "Support",
    color: data.color || "#2457d6",
    textColor: data.textColor || "#ffffff",
    greeting: data.greeting || "Hi! Ask me anything about your order, delivery or account.",
    open: data.open === "true",
  };
  var STORAGE_KEY = "support-assistant:" + cfg.server + ":conversation";
  var HANDOFF_NOTE = "A person will reply here.";

  var CSS = [
    ":host { all: initial; }",
    ".root { position: fixed; right: 20px; bottom: 20px; z-index: 2147483000;",
    "  font: 15px/1.45 system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; color: #1b1f24; }",
    ".launcher { width: 58px; height: 58px; border-radius: 50%; border: 0; cursor: pointer;",
    "  background: var(--accent); color: var(--accent-text); box-shadow: 0 4px 14px rgba(0,0,0,.25);",
    "  font-size: 26px; display: flex; align-items: center; justify-content: center; margin-left: auto; }",
    ".launcher[aria-expanded='true'] { display: none; }",
    ".panel { width: 370px; height: min(600px, calc(100vh - 40px)); background: #fff; border-radius: 14px;",
    "  box-shadow: 0 10px 40px rgba(0,0,0,.25); display: flex; flex-direction: column; overflow: hidden; }",
    ".panel[hidden] { display: none; }",
    "header { background: var(--accent); color: var(--accent-text); padding: 12px 14px;",
    "  display: flex; align-items: center; gap: 10px; }",
    "header h2 { font-size: 16px; margin: 0; flex: 1; }",
    ".status { font-size: 12px; padding: 2px 8px; border-radius: 10px; background: rgba(255,255,255,.22); }",
    ".root[data-handoff='true'] .status { background: #ffd166; color: #1b1f24; }",
    ".close { background: none; border: 0; color: inherit; font-size: 22px; cursor: pointer; line-height: 1; }",
    ".log { flex: 1; overflow-y: auto; padding: 14px; display: flex; flex-direction: column; gap: 8px;",
    "  background: #f5f6f8; }",
    ".msg { max-width: 85%; padding: 8px 12px; border-radius: 14px; white-space: pre-wrap;",
    "  overflow-wrap: anywhere; }",
    ".msg.user { align-self: flex-end; background: var(--accent); color: var(--accent-text);",
    "  border-bottom-right-radius: 4px; }",
    ".msg.bot { align-self: flex-start; background: #fff; border: 1px solid #e2e5ea; border-bottom-left-radius: 4px; }",
    ".msg.bot[aria-busy='true']::after { content: ' \\2026'; color: #8a929c; }",
    ".msg.system { align-self: center; font-size: 13px; color: #5b636e; background: none; text-align: center; }",
    ".msg.error { border-color: #d64545; color: #9b1c1c; }",
    "form { display: flex; gap: 8px; padding: 10px; border-top: 1px solid #e2e5ea; background: #fff; }",
    "textarea { flex: 1; resize: none; border: 1px solid #c9ced6; border-radius: 10px; padding: 8px 10px;",
    "  font: inherit; min-height: 22px; max-height: 120px; }",
    "textarea:focus, button:focus-visible { outline: 2px solid var(--accent); outline-offset: 1px; }",
    "form button { border: 0; border-radius: 10px; padding: 0 14px; background: var(--accent);",
    "  color: var(--accent-text); font: inherit; font-weight: 600; cursor: pointer; }",
    "form button:disabled { opacity: .5; cursor: default; }",
    ".sr-only { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }",
    "@media (max-width: 480px) {",
    "  .root { right: 12px; bottom: 12px; }",
    "  .root[data-open='true'] { inset: 0; }",
    "  .panel { position: fixed; inset: 0; width: 100%; height: 100%; border-radius: 0; }",
    "}",
  ].join("\n");

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) {
      node.setAttribute(name, attrs[name]);
    });
    if (text !== undefined) {
      node.textContent = text; // textContent only: every text stays text, never markup
    }
    return node;
  }

  function randomHex(bytes) {
    var values = new Uint8Array(bytes);
    crypto.getRandomValues(values);
    return Array.prototype.map
      .call(values, function (b) {
        return (b < 16 ? "0" : "") + b.toString(16);
      })
      .join("");
  }

  var memoryId = null;
  function conversationId() {
    if (memoryId) {
      return memoryId;
    }
    var id = null;
    try {
      id = localStorage.getItem(STORAGE_KEY);
    } catch (e) {
      id = null; // storage blocked: the conversation lasts as long as the page
    }
    if (!id || !/^web-[0-9a-f]{32}$/.test(id)) {
      id = "web-" + randomHex(16); // 128 random bits: the visitor's capability for this conversation
      try {
        localStorage.setItem(STORAGE_KEY, id);
      } catch (e) {
        /* storage blocked */
      }
    }
    memoryId = id;
    return id;
  }

  function headers(extra) {
    var h = Object.assign({}, extra);
    if (cfg.siteKey) {
      h["X-Site-Key"] = cfg.siteKey;
    }
    return h;
  }

  // ---------------------------------------------------------------------------------- the UI
  var host = el("div", { id: "support-assistant-widget" });
  host.style.setProperty("--accent", cfg.color);
  host.style.setProperty("--accent-text", cfg.textColor);
  var shadow = host.attachShadow({ mode: "open" });
  var style = el("style", {}, CSS);
  var root = el("div", { class: "root", "data-open": "false", "data-handoff": "false" });
  var launcher = el("button", {
    class: "launcher",
    type: "button",
    "aria-expanded": "false",
    "aria-controls": "panel",
    "aria-label": "Open chat: " + cfg.title,
  });
  launcher.textContent = "\uD83D\uDCAC";
  var panel = el("section", { class: "panel", id: "panel", role: "dialog", "aria-label": cfg.title });
  panel.hidden = true;
  var header = el("header");
  var title = el("h2", {}, cfg.title);
  var status = el("span", { class: "status", role: "status" }, "Assistant");
  var close = el("button", { class: "close", type: "button", "aria-label": "Close chat" }, "\u00D7");
  header.append(title, status, close);
  var log = el("div", { class: "log", role: "log", "aria-live": "polite", "aria-label": "Messages" });
  var form = el("form");
  var label = el("label", { for: "input", class: "sr-only" }, "Message");
  var input = el("textarea", { id: "input", rows: "1", maxlength: "2000", placeholder: "Type your question\u2026" });
  var sendButton = el("button", { type: "submit" }, "Send");
  form.append(label, input, sendButton);
  panel.append(header, log, form);
  root.append(launcher, panel);
  shadow.append(style, root);

  function addMessage(kind, text) {
    var node = el("div", { class: "msg " + kind, "data-role": kind }, text);
    log.appendChild(node);
    log.scrollTop = log.scrollHeight;
    return node;
  }

  function setHandoff(on) {
    if (root.getAttribute("data-handoff") === "true" || !on) {
      return;
    }
    root.setAttribute("data-handoff", "true");
    status.textContent = "Waiting for a person";
    addMessage("system", HANDOFF_NOTE);
  }

  function setOpen(open) {
    panel.hidden = !open;
    root.setAttribute("data-open", String(open));
    launcher.setAttribute("aria-expanded", String(open));
    (open ? input : launcher).focus();
  }

  launcher.addEventListener("click", function () {
    setOpen(true);
  });
  close.addEventListener("click", function () {
    setOpen(false);
  });
  panel.addEventListener("keydown", function (event) {
    if (event.key === "Escape") {
      setOpen(false);
    }
  });
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  // --------------------------------------------------------------------------- SSE and chat
  /** Split complete events off `buffer`, call onEvent(name, data) for each, return the rest. */
  function drainEvents(buffer, onEvent) {
    var end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      var block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      var name = "message";
      var lines = [];
      block.split("\n").forEach(function (line) {
        if (line === "" || line.charAt(0) === ":") {
          return; // comment: keep-alive
        }
        var colon = line.indexOf(":");
        var field = colon < 0 ? line : line.slice(0, colon);
        var value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") {
          name = value;
        } else if (field === "data") {
          lines.push(value);
        }
      });
      if (lines.length) {
        onEvent(name, JSON.parse(lines.join("\n")));
      }
    }
    return buffer;
  }

  function errorText(error) {
    return "Sorry, something went wrong: " + (error && error.message ? error.message : "no reply") + ".";
  }

  async function streamReply(body, bubble) {
    var response = await fetch(cfg.server + "/v1/chat", {
      method: "POST",
      headers: headers({ "Content-Type": "application/json", Accept: "text/event-stream" }),
      body: JSON.stringify(body),
    });
    var type = response.headers.get("Content-Type") || "";
    if (type.indexOf("text/event-stream") !== 0) {
      var json = await response.json().catch(function () {
        return null;
      });
      throw new Error(json && json.error ? json.error.message : "HTTP " + response.status);
    }
    var reader = response.body.getReader();
    var decoder = new TextDecoder();
    var buffer = "";
    var shown = "";
    var result = null;
    var failure = null;
    function onEvent(name, payload) {
      if (name === "chunk") {
        shown += payload.text;
        bubble.textContent = shown;
        log.scrollTop = log.scrollHeight;
      } else if (name === "reset") {
        shown = "";
        bubble.textContent = "";
      } else if (name === "final") {
        result = payload;
      } else if (name === "error") {
        failure = payload;
      }
    }
    for (;;) {
      var part = await reader.read();
      if (part.done) {
        break;
      }
      buffer = drainEvents(buffer + decoder.decode(part.value, { stream: true }).replace(/\r\n?/g, "\n"), onEvent);
    }
    if (failure) {
      throw new Error(failure.message);
    }
    return result; // null: the connection ended early (the server still stores the whole turn)
  }

  async function replayReply(body) {
    // The server finishes and stores a turn whose stream broke off; the same message_id replays it.
    var response = await fetch(cfg.server + "/v1/chat", {
      method: "POST",
      headers: headers({ "Content-Type": "application/json", Accept: "application/json" }),
      body: JSON.stringify(body),
    });
    var json = await response.json();
    if (!response.ok) {
      throw new Error(json && json.error ? json.error.message : "HTTP " + response.status);
    }
    return json;
  }

  var busy = false;
  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text || busy) {
      return;
    }
    busy = true;
    sendButton.disabled = true;
    input.value = "";
    addMessage("user", text);
    var bubble = addMessage("bot", "");
    bubble.setAttribute("aria-busy", "true");
    var body = { conversation_id: conversationId(), message_id: randomHex(16), text: text };
    try {
      var result = await streamReply(body, bubble);
      if (!result) {
        await new Promise(function (resolve) {
          setTimeout(resolve, 1000);
        });
        result = await replayReply(body);
      }
      bubble.textContent = result.replies
        .map(function (r) {
          return r.text;
        })
        .join("\n\n");
      bubble.setAttribute("data-source", result.replies.length ? result.replies[0].source : "");
      setHandoff(result.handoff);
    } catch (error) {
      bubble.classList.add("error");
      bubble.textContent = errorText(error);
    } finally {
      bubble.setAttribute("aria-busy", "false");
      busy = false;
      sendButton.disabled = false;
      log.scrollTop = log.scrollHeight;
    }
  });

  async function loadHistory() {
    var id = null;
    try {
      id = localStorage.getItem(STORAGE_KEY);
    } catch (e) {
      return;
    }
    if (!id) {
      return;
    }
    try {
      var response = await fetch(cfg.server + "/v1/conversations/" + encodeURIComponent(id), {
        headers: headers({ Accept: "application/json" }),
      });
      if (response.status === 404) {
        return; // expired or erased: the next message starts it again
      }
      var json = await response.json();
      if (!response.ok) {
        throw new Error(json && json.error ? json.error.message : "HTTP " + response.status);
      }
      json.turns.forEach(function (turn) {
        addMessage(turn.role === "customer" ? "user" : "bot", turn.text);
      });
      if (json.status === "handoff") {
        setHandoff(true);
      }
    } catch (error) {
      addMessage("system", "The earlier messages could not be loaded (" + error.message + ").");
    }
  }

  function mount() {
    document.body.appendChild(host);
    addMessage("system", cfg.greeting);
    loadHistory();
    if (cfg.open) {
      setOpen(true);
    }
  }
  if (document.body) {
    mount();
  } else {
    document.addEventListener("DOMContentLoaded", mount);
  }
})();
