# syntax=docker/dockerfile:1
# tilestream images. Targets:
#   operator     the Kubernetes operator (`tilestream operator`), production dependencies only
#   trainer-cpu  `tilestream train` on the wasm/cpu backends (no GPU)
#   trainer      `tilestream train` on CUDA with @tensorflow/tfjs-node-gpu
# TypeScript runs through Node 24 type stripping (no build step). Node refuses to strip types
# under node_modules, so the app lives in /app, never inside a node_modules tree.
#
#   docker build --target operator    -t tilestream-operator:0.1.0 .
#   docker build --target trainer-cpu -t tilestream-trainer-cpu:0.1.0 .
#   docker build --target trainer     -t tilestream-trainer:0.1.0 .

# Same major/minor as the `node` devDependency that the tests run on.
ARG NODE_VERSION=24.21.0
# @tensorflow/tfjs-node-gpu 4.22 links libtensorflow 2.9.1, built against CUDA 11.2 and cuDNN 8.1
# (tensorflow.org/install/source#gpu); the 11.2.2 cudnn8 image carries cuDNN 8.1.1.
ARG CUDA_IMAGE=nvidia/cuda:11.2.2-cudnn8-runtime-ubuntu20.04

# ---------------------------------------------------------------------------------------------
# Production dependencies, installed once and shared by operator and trainer-cpu.
FROM node:${NODE_VERSION}-bookworm-slim AS deps
WORKDIR /app
# Manifests first: the npm ci layer is reused until package*.json change.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund \
    && npm cache clean --force

# ---------------------------------------------------------------------------------------------
FROM node:${NODE_VERSION}-bookworm-slim AS operator
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps --chown=0:0 /app/node_modules ./node_modules
COPY --chown=0:0 package.json package-lock.json ./
COPY --chown=0:0 bin ./bin
COPY --chown=0:0 crds ./crds
COPY --chown=0:0 operator ./operator
COPY --chown=0:0 trainer ./trainer
# Files are root-owned and read-only to the process: the chart also sets readOnlyRootFilesystem.
USER 1000:1000
EXPOSE 8080 8081
ENTRYPOINT ["node", "bin/tilestream.js"]
CMD ["operator"]

# ---------------------------------------------------------------------------------------------
FROM node:${NODE_VERSION}-bookworm-slim AS trainer-cpu
ENV NODE_ENV=production \
    TILESTREAM_BACKEND=wasm
WORKDIR /app
COPY --from=deps --chown=0:0 /app/node_modules ./node_modules
COPY --chown=0:0 package.json package-lock.json ./
COPY --chown=0:0 bin ./bin
COPY --chown=0:0 crds ./crds
COPY --chown=0:0 trainer ./trainer
COPY --chown=0:0 operator ./operator
# `tilestream` on PATH so that a Job's `command: [tilestream]` works as well as `args: [train, …]`.
RUN ln -s /app/bin/tilestream.js /usr/local/bin/tilestream
USER 1000:1000
ENTRYPOINT ["node", "/app/bin/tilestream.js"]
CMD ["--help"]

# ---------------------------------------------------------------------------------------------
# GPU trainer dependencies: tfjs-node-gpu downloads libtensorflow-gpu 2.9.1 at install time and may
# compile its binding, so this stage has the build tools; the final stage does not.
FROM ${CUDA_IMAGE} AS trainer-deps
ARG NODE_VERSION
# sha256 of node-v${NODE_VERSION}-linux-x64.tar.xz from https://nodejs.org/dist/v${NODE_VERSION}/SHASUMS256.txt;
# the build stops if it is unset or does not match.
ARG NODE_SHA256
ENV DEBIAN_FRONTEND=noninteractive
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Build-only tools in a throwaway stage; the base image tag pins the distribution release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl xz-utils python3 make g++ \
    && rm -rf /var/lib/apt/lists/*
RUN test -n "${NODE_SHA256}" || { echo "set --build-arg NODE_SHA256=<sha256 of node-v${NODE_VERSION}-linux-x64.tar.xz from SHASUMS256.txt>" >&2; exit 1; } \
    && curl -fsSLo /tmp/node.tar.xz "https://nodejs.org/dist/v${NODE_VERSION}/node-v${NODE_VERSION}-linux-x64.tar.xz" \
    && echo "${NODE_SHA256}  /tmp/node.tar.xz" | sha256sum -c - \
    && mkdir -p /opt/node \
    && tar -xJf /tmp/node.tar.xz -C /opt/node --strip-components=1 --no-same-owner \
    && rm /tmp/node.tar.xz
ENV PATH=/opt/node/bin:${PATH}
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund \
    && npm install --no-save --no-audit --no-fund @tensorflow/tfjs-node-gpu@4.22.0 \
    && npm cache clean --force

# ---------------------------------------------------------------------------------------------
FROM ${CUDA_IMAGE} AS trainer
ENV NODE_ENV=production \
    TILESTREAM_BACKEND=tensorflow \
    PATH=/opt/node/bin:${PATH}
COPY --from=trainer-deps /opt/node /opt/node
WORKDIR /app
COPY --from=trainer-deps --chown=0:0 /app/node_modules ./node_modules
COPY --chown=0:0 package.json package-lock.json ./
COPY --chown=0:0 bin ./bin
COPY --chown=0:0 crds ./crds
COPY --chown=0:0 trainer ./trainer
COPY --chown=0:0 operator ./operator
RUN ln -s /app/bin/tilestream.js /usr/local/bin/tilestream
USER 1000:1000
ENTRYPOINT ["node", "/app/bin/tilestream.js"]
CMD ["--help"]
