# syntax=docker/dockerfile:1
# The AutoSegNet engine as an image: entrypoint `autosegnet`, workspace on the volume /workspace (docs/docker.md).
#
# GPU (default): torch 2.13.0+cu126 from https://download.pytorch.org/whl/cu126 on CUDA 12.6.3 + cuDNN, Ubuntu 24.04.
#   docker build -t autosegnet:cu126 .
# CPU only:
#   docker build -t autosegnet:cpu --build-arg BASE_IMAGE=python:3.11-slim-bookworm \
#                --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu .
#
# The install steps are scripts/install_engine.sh, the same that `make install` runs, with the same constraints.txt.
ARG BASE_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04
FROM ${BASE_IMAGE}

ARG TORCH_INDEX=https://download.pytorch.org/whl/cu126
ARG APP_UID=10001
ARG APP_GID=10001

LABEL org.opencontainers.image.title="autosegnet" \
      org.opencontainers.image.description="AutoSegNet: self-configuring medical image segmentation (nnU-Net v2 family)" \
      org.opencontainers.image.licenses="Apache-2.0"

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Python with venv: the CUDA images (Ubuntu) have no Python; python:*-slim images already have one, and get none.
# hadolint ignore=DL3008
RUN if ! python3 -c "import ensurepip, venv" 2>/dev/null; then \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1

WORKDIR /opt/autosegnet/src

# torch first, in its own layer: it is most of the image and changes only with constraints.txt.
COPY constraints.txt ./
COPY scripts/install_engine.sh scripts/
RUN PYTHON=python3 TORCH_INDEX="${TORCH_INDEX}" bash scripts/install_engine.sh --torch-only /opt/autosegnet/venv

COPY pyproject.toml README.md LICENSE ./
COPY AutoSegNetLib AutoSegNetLib
RUN PYTHON=python3 TORCH_INDEX="${TORCH_INDEX}" bash scripts/install_engine.sh /opt/autosegnet/venv server \
    && /opt/autosegnet/venv/bin/autosegnet --version

# A non-root user that owns the workspace folder, so that a fresh named volume is writable by it. USER is numeric
# so that the host and Kubernetes' runAsNonRoot can tell it is not root.
RUN groupadd --gid "${APP_GID}" autosegnet \
    && useradd --uid "${APP_UID}" --gid "${APP_GID}" --create-home --shell /usr/sbin/nologin autosegnet \
    && mkdir -p /workspace \
    && chown "${APP_UID}:${APP_GID}" /workspace

ENV AUTOSEGNET_HOME=/workspace \
    PATH=/opt/autosegnet/venv/bin:${PATH}
VOLUME ["/workspace"]
# `autosegnet serve --host 0.0.0.0` (with tokens) listens here; see README "Train and segment on a GPU server".
EXPOSE 8765
WORKDIR /workspace
USER ${APP_UID}:${APP_GID}

ENTRYPOINT ["autosegnet"]
CMD ["--help"]
