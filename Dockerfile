# The stream worker: `docker compose up` runs it beside Kafka and Redis.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The CPU build first, in its own layer: PyPI's default torch pulls GBs of CUDA
# libraries, and this layer then survives code changes.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

COPY . .
RUN pip install . \
    && useradd --create-home --uid 10001 reco \
    && mkdir -p /app/registry \
    && chown reco /app /app/registry

USER reco
CMD ["reco", "worker"]
