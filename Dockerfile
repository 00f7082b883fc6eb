# syntax=docker/dockerfile:1
# sloscope: OTLP collector, SLO evaluator, alerting and web UI in one image (docs/deploy.md).
# `sloscope serve --role collector|evaluator|ui|all` picks what a container runs (SLOSCOPE_ROLE).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed, unprivileged uid/gid: volume ownership stays the same across rebuilds, and orchestrators
# that require runAsNonRoot can verify it from the numeric USER below.
RUN groupadd --system --gid 10001 sloscope \
 && useradd --system --uid 10001 --gid sloscope --home-dir /var/lib/sloscope --no-create-home \
      --shell /usr/sbin/nologin sloscope \
 && install -d -o sloscope -g sloscope -m 0750 /var/lib/sloscope

# Only what the distribution is built from (pyproject.toml's packages and package data), installed as a
# regular, non-editable package without the test extra; the sources are removed afterwards.
WORKDIR /tmp/sloscope-src
COPY pyproject.toml README.md ./
COPY sloscope ./sloscope
COPY store ./store
COPY collector ./collector
COPY slo ./slo
COPY alerts ./alerts
COPY ui ./ui
RUN pip install . && cd / && rm -rf /tmp/sloscope-src

# The write-ahead log lives under the data directory: give each collector its own volume there
# (docker-compose.yml; docs/deploy.md explains why it must never be shared).
ENV SLOSCOPE_DATA_DIR=/var/lib/sloscope \
    SLOSCOPE_LOG_FORMAT=json
WORKDIR /var/lib/sloscope
USER 10001:10001

# OTLP/gRPC, OTLP/HTTP, Zipkin v2, API + UI + /metrics.
EXPOSE 4317 4318 9411 8080

# Ask /readyz (503 or no answer: unhealthy); `sloscope health` follows SLOSCOPE_API_PORT and TLS.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 CMD ["sloscope", "health"]

ENTRYPOINT ["sloscope", "serve", "--host", "0.0.0.0"]
