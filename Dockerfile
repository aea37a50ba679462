# syntax=docker/dockerfile:1
# Two images from one file. CI builds and runs both through docker-compose.yml with a private
# Docker Engine (deploy/compose-check.sh), after hadolint and compose config in the tests:
#   export  — torch + timm: builds, fine-tunes and exports models (xception-export).
#   runtime — the service only: ONNX Runtime GPU build + its CUDA 13 / cuDNN 9 pip wheels,
#             no torch, no compilers; runs as a non-root user.
#
# CUDA libraries come from the nvidia-* pip wheels that onnxruntime-gpu's own `cuda`/`cudnn`
# extras name, not from an nvidia/cuda base image: the versions are exactly the ones this ONNX
# Runtime release was built against, both stages share one small Debian base, and the same
# image runs on CPU hosts (the service only loads the libraries when the driver sees a GPU).
# The host needs the NVIDIA driver and the NVIDIA Container Toolkit for GPU use.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# ---------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS export

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin app \
    && mkdir -p /models /weights /data \
    && chown app:app /models
WORKDIR /app
# Pinned dependency set first (its own layer, cached across code changes), then the project.
COPY requirements/export.txt requirements/
RUN pip install --no-cache-dir --requirement requirements/export.txt
COPY pyproject.toml README.md ./
COPY artifact ./artifact
COPY bulk ./bulk
COPY export ./export
RUN pip install --no-cache-dir --no-deps .

USER 10001:10001
VOLUME ["/models"]
# Default: ImageNet Xception into the models volume; an existing version is left alone.
# Offline: mount a weights file at /weights and run
#   xception-export --weights /weights/xception-43020ad28.pth --out /models/xception/1
# Fine-tune: mount an image folder at /data and add --data /data.
ENTRYPOINT ["xception-export"]
CMD ["--weights", "imagenet", "--out", "/models/xception/1", "--skip-existing"]

# ---------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin app
WORKDIR /app
# The base dependencies only (no `export` extra: no torch) plus the CUDA/cuDNN wheels, pinned.
COPY requirements/runtime.txt requirements/
RUN pip install --no-cache-dir --requirement requirements/runtime.txt
COPY pyproject.toml README.md ./
COPY artifact ./artifact
COPY bulk ./bulk
COPY service ./service
RUN pip install --no-cache-dir --no-deps .

# Serves every /models/<name>/<version> (XCEPTION_MODEL_REPOSITORY=""  and XCEPTION_MODEL=...
# for one model folder instead).
ENV XCEPTION_MODEL_REPOSITORY=/models \
    XCEPTION_DEVICE=auto \
    XCEPTION_HOST=0.0.0.0 \
    XCEPTION_PORT=8000 \
    XCEPTION_LOG_LEVEL=info

USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-m", "service.healthcheck"]
# Exec form: xception-serve is PID 1 and receives SIGTERM itself, so it stops accepting,
# drains the queue and in-flight requests, then exits.
ENTRYPOINT ["xception-serve"]
