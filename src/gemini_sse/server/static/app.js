// The gemini-sse chat page: POST /v1/streams, then read the answer with EventSource.
//
// Why EventSource on a resumable stream: when the connection drops mid-answer the browser
// reconnects by itself and sends Last-Event-ID, and the gateway replays only the events
// after it, so the answer continues where it stopped. Event ids are also checked here, so
// no replay can ever show a piece of text twice.
//
// Model output only ever reaches the page as text (text nodes, textContent); the page's
// Content-Security-Policy requires Trusted Types, so an innerHTML would throw anyway.
"use strict";

(() => {
  const MAX_TURNS = 6; // question-answer pairs sent along with the next question
  const KEY_STORAGE = "gemini-sse.api-key"; // sessionStorage: this tab only
  const MODEL_STORAGE = "gemini-sse.model"; // sessionStorage
  const SEPARATORS_STORAGE = "gemini-sse.separators"; // localStorage: a view preference

  const $ = (id) => document.getElementById(id);
  const ui = {
    log: $("log"),
    empty: $("empty"),
    composer: $("composer"),
    prompt: $("prompt"),
    send: $("send"),
    stop: $("stop"),
    status: $("status"),
    settings: $("settings"),
    apiKey: $("api-key"),
    model: $("model"),
    separators: $("show-separators"),
    newChat: $("new-chat"),
  };

  /** Finished turns only, as the gateway takes them: [{role, content}, ...]. */
  const history = [];
  /** The stream being read: {id, source, lastId, stopped, turn, text}, or null. */
  let current = null;

  // --- small helpers -------------------------------------------------------------------

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function authHeaders() {
    const key = ui.apiKey.value.trim();
    return key ? { Authorization: `Bearer ${key}` } : {};
  }

  function duration(ms) {
    return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`;
  }

  function setStatus(text) {
    ui.status.textContent = text;
  }

  /** Keep the newest text in view, unless the reader has scrolled up to read. */
  function follow(update) {
    const log = ui.log;
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 48;
    update();
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  // --- the conversation on the page --------------------------------------------------------

  function addTurn(question) {
    ui.empty.hidden = true;
    const root = element("article", "turn");
    const asked = element("div", "question");
    asked.append(element("span", "visually-hidden", "You: "), question);
    const label = element("div", "answer-label", "Answer");
    const answer = element("div", "answer");
    answer.dataset.state = "waiting";
    const footer = element("footer", "meta");
    footer.hidden = true;
    root.append(asked, label, answer, footer);
    follow(() => ui.log.append(root));
    return { root, label, answer, footer };
  }

  function showSummary(turn, done) {
    const items = [["model", done.model]];
    if (done.usage) {
      const u = done.usage;
      const tokens = `${u.total_tokens} tokens (${u.input_tokens} in, ${u.output_tokens} out)`;
      items.push(["tokens", tokens]);
    }
    items.push(["chunks", `${done.chunks} ${done.chunks === 1 ? "chunk" : "chunks"}`]);
    if (done.ttft_ms !== undefined && done.ttft_ms !== null) {
      items.push(["ttft", `first token ${duration(done.ttft_ms)}`]);
    }
    items.push(["duration", `total ${duration(done.duration_ms)}`]);
    if (done.finish_reason && done.finish_reason !== "stop") {
      items.push(["finish", `finished: ${done.finish_reason}`]);
    }
    const parts = items.map(([field, text]) => {
      const item = element("span", "meta-item", text);
      item.dataset.field = field;
      return item;
    });
    follow(() => {
      turn.footer.replaceChildren(...parts);
      turn.footer.hidden = false;
    });
  }

  function showError(turn, info) {
    const box = element("div", "error");
    box.setAttribute("role", "alert");
    if (info.code) box.append(element("span", "error-code", info.code));
    box.append(element("span", "error-message", info.message || "Something went wrong."));
    if (info.retryable) {
      const later = info.retry_after ? ` in ${Math.ceil(info.retry_after)} s` : "";
      box.append(element("span", "error-hint", `You can try again${later}.`));
    }
    follow(() => turn.root.append(box));
  }

  function showNote(turn, text) {
    follow(() => {
      turn.footer.replaceChildren(element("span", "meta-item", text));
      turn.footer.hidden = false;
    });
  }

  // --- one answer ---------------------------------------------------------------------------

  async function ask() {
    const question = ui.prompt.value.trim();
    if (!question) return;
    if (current) {
      setStatus("An answer is still streaming: wait for it, or press Stop.");
      return;
    }
    ui.prompt.value = "";
    const turn = addTurn(question);
    const stream = {
      id: null, // the gateway's stream id, once the POST has answered
      source: null, // its EventSource
      lastId: 0, // the last event id taken
      stopped: false,
      turn,
      question,
      text: "",
    };
    current = stream;
    setBusy(true);
    setStatus("Sending…");

    const body = {
      messages: [...history.slice(-2 * MAX_TURNS), { role: "user", content: question }],
      separators: true,
    };
    if (ui.model.value) body.model = ui.model.value;

    let created;
    try {
      const response = await fetch("/v1/streams", {
        method: "POST",
        headers: {
          "Content-Type": "application/json",
          Accept: "application/json",
          ...authHeaders(),
        },
        body: JSON.stringify(body),
      });
      if (!response.ok) {
        end(stream, { error: await errorOf(response) });
        return;
      }
      created = await response.json();
    } catch (err) {
      const message = `The gateway could not be reached (${err.message}).`;
      end(stream, { error: { code: "network", message } });
      return;
    }
    stream.id = created.id;
    if (stream.stopped) {
      // Stop was pressed while the POST was in flight: the generation exists now; end it.
      cancel(stream.id);
      end(stream, { note: "Stopped." });
      return;
    }
    read(stream, created.events_url);
  }

  /** The gateway's `{"error": {...}}` body, or what the status says if there is none. */
  async function errorOf(response) {
    try {
      const body = await response.json();
      if (body && body.error && body.error.message) return body.error;
    } catch (_) {
      // not our JSON: a proxy's page, say
    }
    const message = response.statusText || `HTTP ${response.status}`;
    return { code: `http_${response.status}`, message };
  }

  function read(stream, eventsUrl) {
    const source = new EventSource(eventsUrl);
    stream.source = source;
    setStatus("Waiting for the first token…");

    // Each event is taken once, in order: a reconnect replays after Last-Event-ID, and
    // anything at or below the last id seen (which the gateway never sends) is dropped.
    const fresh = (event) => {
      if (stream !== current) return false;
      const id = Number(event.lastEventId);
      if (Number.isInteger(id) && id > 0) {
        if (id <= stream.lastId) return false;
        stream.lastId = id;
      }
      return true;
    };

    source.addEventListener("open", () => {
      if (stream === current && stream.lastId > 0) setStatus("Reconnected: resuming the answer…");
    });
    source.addEventListener("token", (event) => {
      if (!fresh(event)) return;
      const { text } = JSON.parse(event.data);
      stream.text += text;
      if (ui.status.textContent !== "Streaming…") setStatus("Streaming…");
      stream.turn.answer.dataset.state = "streaming";
      follow(() => stream.turn.answer.append(text)); // a text node: never parsed as HTML
    });
    source.addEventListener("separator", (event) => {
      if (!fresh(event)) return;
      const { index } = JSON.parse(event.data);
      const mark = element("span", "sep");
      mark.setAttribute("aria-hidden", "true");
      mark.dataset.index = String(index);
      mark.title = `end of chunk ${index + 1}`;
      stream.turn.answer.append(mark);
    });
    source.addEventListener("done", (event) => {
      if (!fresh(event)) return;
      source.close();
      history.push(
        { role: "user", content: stream.question },
        { role: "assistant", content: stream.text },
      );
      showSummary(stream.turn, JSON.parse(event.data));
      end(stream, {});
    });
    source.addEventListener("error", (event) => {
      // One name, two meanings: the gateway's `error` event carries data; EventSource's own
      // `error` (the connection failed) does not.
      if (typeof event.data === "string") {
        if (!fresh(event)) return;
        source.close();
        end(stream, { error: JSON.parse(event.data) });
      } else if (stream === current) {
        if (source.readyState === EventSource.CLOSED) {
          const message = "The connection was lost and the stream could not be resumed.";
          end(stream, { error: { code: "stream_lost", message } });
        } else {
          setStatus("Connection lost: reconnecting…");
        }
      }
    });
  }

  /** The stream is over (done, failed or stopped): show how, and get ready for the next. */
  function end(stream, { error, note }) {
    if (stream !== current) return;
    current = null;
    if (stream.source) stream.source.close();
    const answer = stream.turn.answer;
    answer.dataset.state = "ended";
    if (!answer.firstChild) {
      answer.hidden = true; // nothing came: the error or note says why
      stream.turn.label.hidden = true;
    }
    const last = answer.lastChild;
    if (last instanceof Element && last.classList.contains("sep")) last.classList.add("trailing");
    if (error) showError(stream.turn, error);
    if (note) showNote(stream.turn, note);
    setBusy(false);
    setStatus(error ? "The answer failed." : note || "Done.");
    if (error && error.code === "unauthorized") {
      // The fix is a key: take the user to the field for it.
      ui.settings.open = true;
      ui.apiKey.focus();
    } else if (document.activeElement === document.body || document.activeElement === ui.stop) {
      ui.prompt.focus();
    }
  }

  function stop() {
    const stream = current;
    if (!stream || stream.stopped) return;
    stream.stopped = true;
    if (!stream.id) {
      setStatus("Stopping…"); // the POST is in flight; `ask` cancels when it answers
      return;
    }
    stream.source.close();
    cancel(stream.id);
    end(stream, { note: "Stopped: the gateway cancelled the generation." });
  }

  /** DELETE the stream, so the gateway stops the model (and nobody pays for unread tokens). */
  function cancel(id, keepalive = false) {
    return fetch(`/v1/streams/${encodeURIComponent(id)}`, {
      method: "DELETE",
      headers: authHeaders(),
      keepalive,
    }).catch(() => {});
  }

  function setBusy(busy) {
    ui.send.disabled = busy;
    ui.stop.disabled = !busy;
    ui.composer.dataset.busy = String(busy);
  }

  // --- settings ---------------------------------------------------------------------------

  async function loadModels() {
    const chosen = ui.model.value || sessionStorage.getItem(MODEL_STORAGE) || "";
    try {
      const headers = { Accept: "application/json", ...authHeaders() };
      const response = await fetch("/v1/models", { headers });
      if (!response.ok) return;
      const { data } = await response.json();
      const options = [new Option("Gateway default", "")];
      for (const model of data || []) options.push(new Option(model.id, model.id));
      ui.model.replaceChildren(...options);
      ui.model.value = options.some((o) => o.value === chosen) ? chosen : "";
    } catch (_) {
      // the list is a convenience; the default model works without it
    }
  }

  function applySeparators() {
    ui.log.classList.toggle("hide-separators", !ui.separators.checked);
  }

  function newChat() {
    stop();
    history.length = 0;
    ui.log.replaceChildren(ui.empty);
    ui.empty.hidden = false;
    setStatus("");
    ui.prompt.focus();
  }

  // --- wiring -----------------------------------------------------------------------------

  ui.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    ask();
  });
  ui.prompt.addEventListener("keydown", (event) => {
    // Enter sends, Shift+Enter is a new line; never in the middle of an IME composition.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      ask();
    }
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && current) stop();
  });
  ui.stop.addEventListener("click", stop);
  ui.newChat.addEventListener("click", newChat);

  ui.apiKey.value = sessionStorage.getItem(KEY_STORAGE) || "";
  ui.apiKey.addEventListener("input", () => {
    const key = ui.apiKey.value.trim();
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
  });
  ui.apiKey.addEventListener("change", loadModels);
  $("settings-form").addEventListener("submit", (event) => {
    event.preventDefault();
    loadModels();
  });
  ui.model.addEventListener("change", () => {
    sessionStorage.setItem(MODEL_STORAGE, ui.model.value);
  });

  ui.separators.checked = localStorage.getItem(SEPARATORS_STORAGE) !== "hidden";
  ui.separators.addEventListener("change", () => {
    localStorage.setItem(SEPARATORS_STORAGE, ui.separators.checked ? "shown" : "hidden");
    applySeparators();
  });
  applySeparators();

  // Leaving the page mid-answer: cancel the generation (a resumable stream outlives its
  // reader, so without this it would run on, unread, until it ends).
  window.addEventListener("pagehide", () => {
    if (current && current.id) cancel(current.id, true);
  });

  loadModels();
  ui.prompt.focus();
})();
