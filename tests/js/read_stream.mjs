// Reads one answer from the gateway with the real AI SDK, as useChat does, and prints
// what the SDK made of it as JSON: the parts it accepted, the resulting UIMessage, and
// the error it raised (if any). Used by tests/test_aisdk.py.
//
// node read_stream.mjs '{"url": ..., "sdk": "6", "mode": "send", "chatId": ..., ...}'
//   sdk:     "5" (ai@5.0.0, whose part schema is strict) or "6" (ai@6)
//   mode:    "send" (sendMessages), "resume" (reconnectToStream), or "stop" (send, then
//            call the gateway's stop endpoint once the first text arrives)
//   messages, body, headers: as given to DefaultChatTransport / sendMessages
import * as ai6 from "ai";
import * as ai5 from "ai5";

const options = JSON.parse(process.argv[2]);
const sdk = options.sdk === "5" ? ai5 : ai6;
const headers = options.headers ?? {};
const transport = new sdk.DefaultChatTransport({
  api: `${options.url}/api/chat`,
  body: options.body,
  headers,
});

function report(result) {
  process.stdout.write(JSON.stringify(result) + "\n");
}

let stream;
try {
  if (options.mode === "resume") {
    stream = await transport.reconnectToStream({ chatId: options.chatId });
    if (stream === null) {
      report({ resumed: false, parts: [], message: null, error: null });
      process.exit(0);
    }
  } else {
    stream = await transport.sendMessages({
      chatId: options.chatId,
      messages: options.messages,
      trigger: "submit-message",
      messageId: undefined,
      abortSignal: undefined,
    });
  }
} catch (error) {
  // The transport throws the response's body when the gateway refuses the request.
  report({ parts: [], message: null, error: error.message, refused: true });
  process.exit(0);
}

const parts = [];
let stopped = false;
const seen = stream.pipeThrough(
  new TransformStream({
    async transform(part, controller) {
      parts.push(part);
      if (options.mode === "stop" && part.type === "text-delta" && !stopped) {
        stopped = true;
        const url = `${options.url}/api/chat/${encodeURIComponent(options.chatId)}/stop`;
        const response = await fetch(url, { method: "POST", headers });
        if (response.status !== 204) throw new Error(`stop answered ${response.status}`);
      }
      controller.enqueue(part);
    },
  }),
);

let message = null;
let error = null;
for await (const snapshot of sdk.readUIMessageStream({
  stream: seen,
  onError: (e) => {
    error = e.message;
  },
})) {
  message = snapshot;
}
report({ resumed: options.mode === "resume" ? true : undefined, parts, message, error });
