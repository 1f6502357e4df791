# todo-api: a slim, non-root image. Build: docker build -t todo-api .
# Serve: docker run -e DATABASE_URL=... -e JWT_SECRET=... -p 8000:8000 todo-api
# Migrate (the release step, once per deploy): docker run ... todo-api todo-api migrate
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY backend ./backend
RUN python -m venv /opt/venv && /opt/venv/bin/pip install .

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ENVIRONMENT=production
RUN useradd --system --uid 10001 --home-dir /app --create-home todo
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
# Migrations belong to the release step (`todo-api migrate`), not to every worker's start.
# FORWARDED_ALLOW_IPS (read by uvicorn) names the proxies trusted for X-Forwarded-*.
CMD ["todo-api", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2", "--no-migrate"]
