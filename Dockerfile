# syntax=docker/dockerfile:1.7
# One image for the API and every worker. Build stage makes wheels; the runtime stage is
# slim, runs as a non-root user, and has espeak-ng (narration) and DejaVu (captions).

FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m pip install --no-cache-dir --upgrade pip
COPY pyproject.toml README.md alembic.ini ./
COPY reelflow ./reelflow
COPY db ./db
COPY steps ./steps
COPY workflows ./workflows
COPY api ./api
COPY cli ./cli
RUN python -m pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends espeak-ng fonts-dejavu-core curl \
 && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 10001 reelflow \
 && mkdir -p /data && chown reelflow:reelflow /data
# s3: artifacts in object storage (obstore); otel: traces. EXTRAS=gpu,s3,otel adds torch,
# for the gpu-worker image (frames then render on CUDA).
ARG EXTRAS="s3,otel"
COPY --from=build /wheels /wheels
RUN wheel="$(ls /wheels/reelflow-*.whl)" \
 && python -m pip install --no-cache-dir --find-links /wheels "${wheel}${EXTRAS:+[$EXTRAS]}" \
 && rm -rf /wheels
COPY docker/entrypoint.sh /usr/local/bin/reelflow-entrypoint
RUN chmod 0755 /usr/local/bin/reelflow-entrypoint
ENV REELFLOW_HOME=/data \
    ARTIFACT_ROOT=/data/artifacts \
    PUBLISH_DIR=/data/published \
    LOG_FORMAT=json \
    API_HOST=0.0.0.0 \
    API_PORT=8000 \
    PYTHONUNBUFFERED=1
USER reelflow
WORKDIR /home/reelflow
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=10s --start-period=30s --retries=3 \
  CMD ["reelflow-entrypoint", "healthcheck"]
ENTRYPOINT ["reelflow-entrypoint"]
CMD ["api"]
