// The gemini-sse chat page: POST /v1/streams, then read the answer with EventSource.
//
// Why EventSource on a resumable stream: when the connection drops mid-answer the browser
// reconnects by itself and sends Last-Event-ID, and the gateway replays only the events
// after it, so the answer continues where it stopped. Event ids are also checked here, so
// no replay can ever show a piece of text twice.
//
// Model output only ever reaches the page as text (text nodes, textContent): answers and
// thoughts are Markdown, turned into elements by markdown.js (see there why that is safe
// without a sanitiser). The page's Content-Security-Policy requires Trusted Types, so an
// innerHTML would throw anyway.
"use strict";

(() => {
  const MAX_TURNS = 6; // question-answer pairs sent along with the next question
  const KEY_STORAGE = "gemini-sse.api-key"; // sessionStorage: this tab only
  const MODEL_STORAGE = "gemini-sse.model"; // sessionStorage
  const SEPARATORS_STORAGE = "gemini-sse.separators"; // localStorage: a view preference
  const THINK_STORAGE = "gemini-sse.think"; // localStorage: what to ask for
  const SEARCH_STORAGE = "gemini-sse.search"; // localStorage
  const { render, safeUrl } = window.GeminiMarkdown;

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
    think: $("think"),
    search: $("search"),
    newChat: $("new-chat"),
  };

  /** Finished turns only, as the gateway takes them: [{role, content}, ...]. */
  const history = [];
  /** The stream being read (see `ask`), or null. */
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
    // The thought summary, above the answer and closed: it is not the answer.
    const thoughts = element("details", "thoughts");
    const thinking = element("summary", null, "Thinking…");
    const reasoning = element("div", "reasoning");
    thoughts.append(thinking, reasoning);
    thoughts.hidden = true;
    const label = element("div", "answer-label", "Answer");
    const answer = element("div", "answer");
    answer.dataset.state = "waiting";
    const calls = element("div", "tool-calls");
    calls.hidden = true;
    const sources = element("section", "sources");
    sources.setAttribute("aria-label", "Sources");
    sources.hidden = true;
    const footer = element("footer", "meta");
    footer.hidden = true;
    root.append(asked, thoughts, label, answer, calls, sources, footer);
    follow(() => ui.log.append(root));
    return { root, thoughts, thinking, reasoning, label, answer, calls, sources, footer };
  }

  /** Render what changed since the last frame; at most once a frame, however fast tokens come. */
  function paint(stream) {
    if (!stream.frame) stream.frame = requestAnimationFrame(() => draw(stream));
  }

  function draw(stream) {
    if (stream.frame) cancelAnimationFrame(stream.frame);
    stream.frame = 0;
    const turn = stream.turn;
    follow(() => {
      if (stream.dirty.has("reasoning")) turn.reasoning.replaceChildren(render(stream.reasoning));
      if (stream.dirty.has("answer")) {
        const mark = (index) => chunkMark(stream, index);
        turn.answer.replaceChildren(render(stream.text, { marks: stream.marks, mark }));
      }
    });
    stream.dirty.clear();
  }

  /** A chunk boundary: a mark that holds no text. */
  function chunkMark(stream, index) {
    const mark = element("span", "sep");
    mark.setAttribute("aria-hidden", "true");
    mark.dataset.index = String(index);
    mark.title = `end of chunk ${index + 1}`;
    // The mark after the last chunk is not "between" anything: hidden once the answer ended.
    if (stream.ended && stream.marks[index] === stream.text.length) mark.classList.add("trailing");
    return mark;
  }

  /** A tool call as it streams in; the page shows it but cannot run it. */
  function showCall(stream, index, { name, arguments: args = "", whole = false }) {
    let call = stream.calls.get(index);
    if (!call) {
      call = { name: "", args: "", box: element("div", "tool-call") };
      call.box.title = "The model asked to call a tool; this page cannot run tools.";
      stream.calls.set(index, call);
      stream.turn.calls.append(call.box);
      stream.turn.calls.hidden = false;
    }
    if (name) call.name = name;
    call.args = whole ? args : call.args + args;
    const code = element("code", null, `${call.name}(${call.args})`);
    follow(() => call.box.replaceChildren(element("span", "tool-call-label", "Tool call: "), code));
  }

  function showSource(turn, source) {
    let list = turn.sources.querySelector("ol");
    if (!list) {
      list = element("ol");
      turn.sources.append(element("div", "sources-label", "Sources"), list);
      turn.sources.hidden = false;
    }
    const item = element("li");
    const href = safeUrl(source.url);
    const name = source.title || source.url;
    if (href && href.startsWith("http")) {
      const a = element("a", null, name);
      a.href = href;
      a.target = "_blank";
      a.rel = "noopener noreferrer";
      item.append(a);
    } else {
      item.append(name); // not a web page: shown, not linked
    }
    follow(() => list.append(item));
  }

  function showSummary(turn, done) {
    const items = [["model", done.model]];
    if (done.usage) {
      const u = done.usage;
      const counts = [`${u.input_tokens} in`, `${u.output_tokens} out`];
      if (u.reasoning_tokens) counts.push(`${u.reasoning_tokens} thinking`);
      items.push(["tokens", `${u.total_tokens} tokens (${counts.join(", ")})`]);
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
    if (info.category) box.append(element("span", "error-category", info.category));
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
      ended: false,
      turn,
      question,
      text: "", // the answer so far, as Markdown
      marks: [], // where in `text` each chunk ended
      reasoning: "", // the thought summary so far
      calls: new Map(), // tool calls by index: {name, args, box}
      dirty: new Set(), // what to render in the next frame: "answer", "reasoning"
      frame: 0, // the requested animation frame, if any
    };
    current = stream;
    setBusy(true);
    setStatus("Sending…");

    const body = {
      messages: [...history.slice(-2 * MAX_TURNS), { role: "user", content: question }],
      separators: true,
    };
    if (ui.model.value) body.model = ui.model.value;
    if (ui.think.checked) body.thinking = { include_thoughts: true };
    if (ui.search.checked) body.grounding = true;

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
    source.addEventListener("reasoning", (event) => {
      if (!fresh(event)) return;
      stream.reasoning += JSON.parse(event.data).text;
      stream.turn.thoughts.hidden = false;
      if (!stream.text) setStatus("Thinking…");
      stream.dirty.add("reasoning");
      paint(stream);
    });
    source.addEventListener("token", (event) => {
      if (!fresh(event)) return;
      stream.text += JSON.parse(event.data).text;
      if (ui.status.textContent !== "Streaming…") setStatus("Streaming…");
      stream.turn.thinking.textContent = "Thoughts"; // the answer has begun
      stream.turn.answer.dataset.state = "streaming";
      stream.dirty.add("answer");
      paint(stream);
    });
    source.addEventListener("separator", (event) => {
      if (!fresh(event)) return;
      stream.marks.push(stream.text.length);
      stream.dirty.add("answer");
      paint(stream);
    });
    source.addEventListener("tool_call_delta", (event) => {
      if (!fresh(event)) return;
      const delta = JSON.parse(event.data);
      showCall(stream, delta.index, delta);
    });
    source.addEventListener("tool_call", (event) => {
      if (!fresh(event)) return;
      const call = JSON.parse(event.data);
      showCall(stream, call.index, { ...call, whole: true });
    });
    source.addEventListener("source", (event) => {
      if (!fresh(event)) return;
      showSource(stream.turn, JSON.parse(event.data));
    });
    source.addEventListener("done", (event) => {
      if (!fresh(event)) return;
      source.close();
      if (stream.text.trim()) {
        // An answer of tool calls only has no text to send back: the turn is left out.
        history.push(
          { role: "user", content: stream.question },
          { role: "assistant", content: stream.text },
        );
      }
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
    stream.ended = true;
    stream.dirty.add("answer");
    draw(stream); // at once: the last frame may not have come (a hidden tab has none)
    const answer = stream.turn.answer;
    answer.dataset.state = "ended";
    stream.turn.thinking.textContent = "Thoughts";
    if (!stream.text) {
      answer.hidden = true; // no text came: the error, note or tool call says why
      stream.turn.label.hidden = true;
    }
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

  for (const [box, key] of [
    [ui.think, THINK_STORAGE],
    [ui.search, SEARCH_STORAGE],
  ]) {
    box.checked = localStorage.getItem(key) === "on";
    box.addEventListener("change", () => localStorage.setItem(key, box.checked ? "on" : "off"));
  }

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
