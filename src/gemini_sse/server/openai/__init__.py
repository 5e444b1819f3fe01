"""The OpenAI-compatible surface: `/v1/chat/completions` and `/v1/models`.

`models` holds OpenAI's shapes and the translation of our vocabulary into them,
`encoding` the chunk stream encoder, `routes` the routes themselves.
"""
