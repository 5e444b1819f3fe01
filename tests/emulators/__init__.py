"""Wire-level emulators of the upstream model APIs, on 127.0.0.1, for the provider tests.

- `vertex_grpc`: Vertex AI's PredictionService over gRPC + TLS (ChatVertexAI, `grpc`);
- `genai_http`: Gemini's REST streaming, both URL families, as server-sent events
  (ChatGoogleGenerativeAI) or as a streamed JSON array (ChatVertexAI, `rest`), plus the
  OAuth token endpoint;
- `openai_http`: OpenAI-compatible chat completions streaming (ChatOpenAI).

Each runs in its own thread, answers according to `emulator.script` (`scenario`), and
records what it saw in `emulator.record`. Around them: `certs` (a throwaway TLS identity),
`adc` (a service-account ADC file), `httpserver` and `relay` (the byte-level servers that
let a scenario cut a connection), `drive` (a provider run the way the pipeline runs it,
plus an event-loop stall meter) and `leaks` (the connection pools a provider left open).
"""
