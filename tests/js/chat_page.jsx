// A minimal useChat page against the gateway, bundled by tests/test_aisdk.py with esbuild
// and served on the gateway's own origin. The chat id comes from `?chat=`; the messages
// are kept in sessionStorage, so that a reload finds the question and resumes the answer.
import { useChat } from "@ai-sdk/react";
import { DefaultChatTransport } from "ai";
import { useEffect, useState } from "react";
import { createRoot } from "react-dom/client";

const chatId = new URLSearchParams(location.search).get("chat");
const storageKey = `chat:${chatId}`;
const saved = JSON.parse(sessionStorage.getItem(storageKey) ?? "[]");

function App() {
  const [question, setQuestion] = useState("");
  const { messages, sendMessage, stop, status, error } = useChat({
    id: chatId,
    messages: saved,
    resume: true, // GET /api/chat/{id}/stream on load: 204 when nothing runs
    transport: new DefaultChatTransport({ api: "/api/chat" }),
  });
  useEffect(() => sessionStorage.setItem(storageKey, JSON.stringify(messages)), [messages]);

  async function onStop() {
    // stop() only aborts this page's fetch; the gateway's stop endpoint ends the model call.
    await fetch(`/api/chat/${encodeURIComponent(chatId)}/stop`, { method: "POST" });
    await stop();
  }

  return (
    <main>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          sendMessage({ text: question });
          setQuestion("");
        }}
      >
        <input id="question" value={question} onChange={(e) => setQuestion(e.target.value)} />
        <button id="send" type="submit">Send</button>
        <button id="stop" type="button" onClick={onStop}>Stop</button>
      </form>
      <p id="status">{status}</p>
      {error && <p id="error">{error.message}</p>}
      <ol id="log">
        {messages.map((m) => (
          <li key={m.id} className={m.role}>
            {m.parts.filter((p) => p.type === "text").map((p) => p.text).join("")}
          </li>
        ))}
      </ol>
    </main>
  );
}

createRoot(document.getElementById("root")).render(<App />);
