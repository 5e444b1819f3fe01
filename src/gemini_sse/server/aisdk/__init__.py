"""The Vercel AI SDK's UI message stream: `POST /api/chat` for `useChat`.

`models` holds the SDK's request shape and its translation into ours, `encoding` the
UI message stream encoder, `routes` the routes (send, resume, stop).
"""
