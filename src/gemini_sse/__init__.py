"""gemini-sse."""
