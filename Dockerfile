# One image for every Outrider service (api, worker, browser-worker, migrate).
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends chromium curl \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY api ./api
COPY worker ./worker
COPY shared ./shared
COPY migrations ./migrations
COPY outrider ./outrider
COPY client ./client
RUN pip install ./client . && useradd --system --home /app outrider
USER outrider
EXPOSE 8000 9100
CMD ["outrider", "api", "--host", "0.0.0.0", "--port", "8000"]
