# syntax=docker/dockerfile:1
# tilestream images, all three on one base (Debian bookworm + the Node the project pins). Targets:
#   operator     the Kubernetes operator (`tilestream operator`): the app and its production dependencies
#   trainer-cpu  `tilestream train` on TensorFlow's CPU build (the tensorflow-cpu 2.21 wheel's libraries);
#                both trainers also hold OpenSlide 4 (the openslide-bin wheel's) for whole-slide formats
#   trainer      `tilestream train` on TensorFlow's CUDA 12 build (the tensorflow 2.21 wheel and its
#                nvidia-*-cu12 user-space wheels); the GPU driver comes from the node
# The TensorFlow builds are made by `tilestream setup tensorflow [--gpu]` — the command users run —
# in a build stage, from the lock files and hash-pinned wheels in trainer/backend/native/<variant>/.
# Only the build stages have python3-pip, make and g++; the final images get the finished build
# folder, the production node_modules of package-lock.json and the sources, nothing else.
# TypeScript runs through Node 24 type stripping (no build step). Node refuses to strip types
# under node_modules, so the app lives in /app, never inside a node_modules tree.
#
#   docker build --target operator    -t tilestream-operator:0.1.0 .
#   docker build --target trainer-cpu -t tilestream-trainer-cpu:0.1.0 .
#   docker build --target trainer     -t tilestream-trainer:0.1.0 .
#
# Registries behind a TLS-inspecting proxy: pass the proxy's CA (PEM) as a build secret, e.g.
#   docker build --secret id=corporate_ca,src=corp-ca.pem --target trainer .
#   buildah bud  --secret id=corporate_ca,src=corp-ca.pem --target trainer .
# The build stages trust it for npm, pip and node-gyp; no final image contains it. A secret rather
# than a build argument: a PEM file is passed as a file, and unlike a build argument it is kept out
# of the build cache key, the build history and provenance attestations.

# Same version as the `node` devDependency that the tests run on.
ARG NODE_VERSION=24.21.0

# ---------------------------------------------------------------------------------------------
# Build tools, in the build stages only. The base image tag pins the Debian release.
FROM node:${NODE_VERSION}-bookworm-slim AS build-tools
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN --mount=type=secret,id=corporate_ca \
    apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates python3 python3-pip make g++ \
    && rm -rf /var/lib/apt/lists/* \
    && if [ -s /run/secrets/corporate_ca ]; then \
         cp /run/secrets/corporate_ca /usr/local/share/ca-certificates/corporate-ca.crt \
         && update-ca-certificates; \
       fi
# npm (Node) and pip use the system trust store, which holds the corporate CA when one was given;
# pip keeps no copy of the wheels in the layer.
ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    PIP_NO_CACHE_DIR=1

# ---------------------------------------------------------------------------------------------
# Production dependencies exactly as locked: the `node` devDependency (a second Node) and the test
# tools stay out. Manifests first: this layer is reused until package*.json change.
FROM build-tools AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund \
    && npm cache clean --force

# ---------------------------------------------------------------------------------------------
# The native TensorFlow builds, into /opt/tilestream/tensorflow/<key>/ (the key is a digest of the
# pin files, which the trainer finds again through the same TILESTREAM_TENSORFLOW_CACHE at run
# time). Only what the setup command loads is copied, so other source edits keep these layers.
FROM deps AS tensorflow-setup
ENV TILESTREAM_TENSORFLOW_CACHE=/opt/tilestream/tensorflow
COPY bin/setup-tensorflow.ts ./bin/
COPY trainer/backend/cpu-allowance.ts trainer/backend/cgroup.ts ./trainer/backend/
COPY trainer/backend/native ./trainer/backend/native

FROM tensorflow-setup AS tensorflow-cpu
RUN node bin/setup-tensorflow.ts setup tensorflow \
    && rm -rf /root/.npm

FROM tensorflow-setup AS tensorflow-gpu
RUN node bin/setup-tensorflow.ts setup tensorflow --gpu \
    && rm -rf /root/.npm

# ---------------------------------------------------------------------------------------------
# The OpenSlide 4 library that reads whole-slide formats (.svs, .ndpi, .mrxs, DICOM WSI, ...): the
# pinned openslide-bin wheel's self-contained libopenslide.so.1, placed by `tilestream setup
# openslide` — the command users run — into /opt/tilestream/openslide/<pin>/ (found again through
# TILESTREAM_OPENSLIDE_CACHE). The setup loads the library through koffi (a production dependency)
# to check it. Only what bin/setup-openslide.ts loads is copied, so other edits keep this layer.
FROM deps AS openslide-setup
ENV TILESTREAM_OPENSLIDE_CACHE=/opt/tilestream/openslide
COPY bin/setup-openslide.ts ./bin/
COPY trainer/data/slide/setup-cli.ts trainer/data/slide/openslide-setup.ts trainer/data/slide/openslide-lib.ts trainer/data/slide/openslide.ts ./trainer/data/slide/
RUN node bin/setup-openslide.ts setup openslide

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
# TILESTREAM_BACKEND=tensorflow makes a build that fails to load an error instead of a silent
# fallback to wasm; a manifest's spec.training.backend still chooses another backend.
FROM node:${NODE_VERSION}-bookworm-slim AS trainer-cpu
ENV NODE_ENV=production \
    TILESTREAM_BACKEND=tensorflow \
    TILESTREAM_TENSORFLOW_CACHE=/opt/tilestream/tensorflow \
    TILESTREAM_OPENSLIDE_CACHE=/opt/tilestream/openslide
COPY --from=tensorflow-cpu --chown=0:0 /opt/tilestream/tensorflow /opt/tilestream/tensorflow
COPY --from=openslide-setup --chown=0:0 /opt/tilestream/openslide /opt/tilestream/openslide
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
# The CUDA libraries are the wheels' (found through libtensorflow's $ORIGIN-relative search paths);
# libcuda comes from the node through the NVIDIA container toolkit, which mounts it when the
# capabilities include compute. NVIDIA_VISIBLE_DEVICES is deliberately unset: the device plugin
# sets it for pods that request GPUs, and an image default of `all` would expose every GPU to a
# pod that requested none. LD_LIBRARY_PATH is where GKE's driver installer mounts libcuda.
# TensorFlow reserves nearly all GPU memory up front unless it may grow its allocation.
FROM node:${NODE_VERSION}-bookworm-slim AS trainer
ENV NODE_ENV=production \
    TILESTREAM_BACKEND=tensorflow \
    TILESTREAM_TENSORFLOW_CACHE=/opt/tilestream/tensorflow \
    TILESTREAM_OPENSLIDE_CACHE=/opt/tilestream/openslide \
    TF_FORCE_GPU_ALLOW_GROWTH=true \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    LD_LIBRARY_PATH=/usr/local/nvidia/lib:/usr/local/nvidia/lib64
COPY --from=tensorflow-gpu --chown=0:0 /opt/tilestream/tensorflow /opt/tilestream/tensorflow
COPY --from=openslide-setup --chown=0:0 /opt/tilestream/openslide /opt/tilestream/openslide
WORKDIR /app
COPY --from=deps --chown=0:0 /app/node_modules ./node_modules
COPY --chown=0:0 package.json package-lock.json ./
COPY --chown=0:0 bin ./bin
COPY --chown=0:0 crds ./crds
COPY --chown=0:0 trainer ./trainer
COPY --chown=0:0 operator ./operator
RUN ln -s /app/bin/tilestream.js /usr/local/bin/tilestream
USER 1000:1000
ENTRYPOINT ["node", "/app/bin/tilestream.js"]
CMD ["--help"]
