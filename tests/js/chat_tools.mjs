// Runs one chat turn as useChat does, with a tool that runs in the page: the SDK's own
// AbstractChat (which useChat wraps) over DefaultChatTransport, `onToolCall` answering
// the model's call with `addToolResult`, and `sendAutomaticallyWhen` sending the
// conversation again once every call has its result. Prints the chat's messages, the
// bodies it posted and the calls it saw, as JSON. Used by tests/test_aisdk.py.
//
// node chat_tools.mjs '{"url": ..., "sdk": "6", "chatId": ..., "question": ..., "body": {...}, "output": ...}'
//   body:   the transport's `body` option (the gateway's `tools` ...)
//   output: what the page's tool returns, for every call
import * as ai6 from "ai";
import * as ai5 from "ai5";

const options = JSON.parse(process.argv[2]);
const sdk = options.sdk === "5" ? ai5 : ai6;

// The chat's state in memory, as @ai-sdk/react keeps it (without React).
class MemoryState {
  status = "ready";
  error = undefined;
  messages = [];
  pushMessage = (message) => {
    this.messages = this.messages.concat(this.snapshot(message));
  };
  popMessage = () => {
    this.messages = this.messages.slice(0, -1);
  };
  replaceMessage = (index, message) => {
    this.messages = this.messages.map((m, i) => (i === index ? this.snapshot(message) : m));
  };
  snapshot = (value) => structuredClone(value);
}

const posted = [];
const calls = [];
const chat = new sdk.AbstractChat({
  id: options.chatId,
  state: new MemoryState(),
  transport: new sdk.DefaultChatTransport({
    api: `${options.url}/api/chat`,
    body: options.body,
    fetch: async (url, init) => {
      posted.push(JSON.parse(init.body));
      return fetch(url, init);
    },
  }),
  sendAutomaticallyWhen: sdk.lastAssistantMessageIsCompleteWithToolCalls,
  onToolCall: ({ toolCall }) => {
    calls.push(toolCall);
    // Not awaited: the SDK runs it after the part that called (awaiting would deadlock).
    chat.addToolResult({
      tool: toolCall.toolName,
      toolCallId: toolCall.toolCallId,
      output: options.output,
    });
  },
});

// Resolves once the answer and every automatic follow-up have been read.
await chat.sendMessage({ text: options.question });
process.stdout.write(
  JSON.stringify({
    status: chat.status,
    error: chat.error?.message ?? null,
    messages: chat.messages,
    posted,
    calls,
  }) + "\n",
);
