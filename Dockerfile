# syntax=docker/dockerfile:1
# streamer: masks Conductor _secrets/_masked values on their way through Kafka.
#
#   docker build -t streamer:local .
#   docker run --rm -e STREAMER_BOOTSTRAP_SERVERS=kafka:9092 -p 9400:9400 streamer:local
#
# Every setting is a STREAMER_* environment variable (see streamer/settings.py and the README);
# docker-compose.yml runs the whole stack and docs/docker.md explains it.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: a wheel of the project, installed with its runtime dependencies only --------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    VENV=/opt/streamer \
    WHEELS=/wheels

WORKDIR /src
# .dockerignore is an allowlist: the context is pyproject.toml, README.md and the folders that
# pyproject.toml's packages come from, nothing else.
COPY . .

# tests/integration/test_install.py runs this very RUN line (VENV and WHEELS in a temporary
# folder) and checks that the result works and holds no dev tools: keep it one self-contained
# line. The venv gets no pip or setuptools; confluent-kafka, fastavro and pysimdjson come as
# manylinux wheels (amd64 and arm64), so no compiler is needed.
RUN python -m pip wheel --no-deps --wheel-dir "$WHEELS" . \
    && python -m venv --without-pip "$VENV" \
    && python -m pip --python "$VENV/bin/python" install "$WHEELS"/streamer-*.whl

# --- runtime: the interpreter of the same base image, the venv, a non-root user -----------------
FROM ${PYTHON_IMAGE}

ARG PYTHON_IMAGE
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="streamer" \
      org.opencontainers.image.description="Masks Conductor's _secrets and _masked values in workflow and task execution events on Kafka: a public copy, an archive copy, a quarantine." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"

RUN groupadd --system --gid 10001 streamer \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin streamer

COPY --from=builder /opt/streamer /opt/streamer

ENV PATH=/opt/streamer/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STREAMER_METRICS_HOST=0.0.0.0

USER 10001:10001
WORKDIR /tmp

# /metrics, /healthz and /readyz (STREAMER_METRICS_PORT, default 9400; 0 disables them, and
# then this health check fails: keep the port on in a container).
EXPOSE 9400
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % (os.environ.get('STREAMER_METRICS_PORT') or '9400'), timeout=4)"]

ENTRYPOINT ["streamer"]
CMD ["run"]
