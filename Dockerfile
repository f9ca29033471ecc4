# Outrider's images, one build with three targets:
#   app             the API, the default-queue worker and the migration (no browser)
#   browser-worker  the same plus Debian's Chromium, for the browser queue
FROM python:3.11-slim-bookworm AS app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml requirements.lock README.md ./
COPY api ./api
COPY worker ./worker
COPY shared ./shared
COPY migrations ./migrations
COPY outrider ./outrider
COPY client ./client
# The runtime dependencies only, at the versions CI tested (the lock as constraints); the
# client too (the CLI's scrape/submit/watch and the MCP tools use it).
RUN pip install -c requirements.lock ./client . && useradd --system --home /app outrider
USER outrider
# 8000: the API; 9464: a worker's /metrics (OUTRIDER_WORKER_METRICS_PORT)
EXPOSE 8000 9464
CMD ["outrider", "api", "--host", "0.0.0.0", "--port", "8000"]

FROM app AS browser-worker
USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends chromium \
    && rm -rf /var/lib/apt/lists/*
USER outrider
ENV OUTRIDER_CHROMIUM_PATH=/usr/bin/chromium
EXPOSE 9464
CMD ["outrider", "worker", "--queue", "browser", "--concurrency", "4"]
