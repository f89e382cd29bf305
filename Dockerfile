# syntax=docker/dockerfile:1
#
# opsgenie-dx-relay: two stages. "build" installs the package and its runtime dependencies
# (never the test extra) into a virtualenv with the same `pip install .` CI uses; "runtime"
# copies only that virtualenv onto a fresh slim base, so no build tooling is shipped.
#
#   docker build -t opsgenie-dx-relay:0.1.0 .
#   docker run --rm -p 8080:8080 -v relay-data:/data --read-only --tmpfs /tmp \
#     -e RELAY_WEBHOOK_TOKENS=... opsgenie-dx-relay:0.1.0

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

WORKDIR /src
RUN python -m venv /opt/venv

# pyproject.toml names README.md as the long description, so the build needs it.
COPY pyproject.toml README.md ./
COPY service ./service
RUN pip install --no-cache-dir .

FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="opsgenie-dx-relay" \
      org.opencontainers.image.description="Relays Opsgenie alert webhooks to DX incidents, durably." \
      org.opencontainers.image.licenses="Apache-2.0"

# Nothing is written outside /data (the SQLite database and its key file) and /tmp, so the
# container runs with a read-only root filesystem.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    RELAY_HOST=0.0.0.0 \
    RELAY_PORT=8080 \
    RELAY_DATABASE_URL=sqlite:////data/relay.db

RUN groupadd --system --gid 10001 relay \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin relay \
    && mkdir -p /data \
    && chown 10001:10001 /data \
    && chmod 0700 /data

COPY --from=build /opt/venv /opt/venv

VOLUME ["/data"]
WORKDIR /data
USER 10001:10001
EXPOSE 8080

# No curl in slim images: probe with the interpreter that is already there.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('RELAY_PORT', '8080'), timeout=4)"]

ENTRYPOINT ["opsgenie-dx-relay", "serve"]
