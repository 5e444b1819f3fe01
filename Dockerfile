# The gateway: `docker build -t gemini-sse . && docker run -p 8000:8000 gemini-sse`
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GEMINI_SSE_HOST=0.0.0.0 \
    GEMINI_SSE_PORT=8000

RUN useradd --create-home --uid 10001 gateway
WORKDIR /app

COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install '.[server]'

USER gateway
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('GEMINI_SSE_PORT', '8000')}/healthz\", timeout=2)"]

# SIGTERM drains: streams get `shutting_down`, then the process exits.
STOPSIGNAL SIGTERM
CMD ["gemini-sse", "serve", "--host", "0.0.0.0"]
