"""The OpenAI-compatible surface: `/v1/chat/completions`, `/v1/models` and `/v1/responses`.

Chat completions: `models` holds OpenAI's shapes, `translate` turns a request into ours,
`answers` turns our events into an answer's pieces, `encoding` is the chunk stream encoder,
`errors` gives our errors OpenAI's shape, `routes` the routes themselves. The Responses
API likewise: `responses_models`, `responses_request`, `responses` (the event encoder)
and `responses_routes`.
"""
