# syntax=docker/dockerfile:1.7
#
# The image of your own worker: a binary of your workspace that hosts your services and
# workflows on `baton::Worker` (see docs/kubernetes.md). Copy this file into your repository
# and build from its root, naming the package and binary:
#
#   docker build -f worker.Dockerfile \
#     --build-arg PACKAGE=booking --build-arg BIN=booking-worker -t registry.example.com/booking-worker:1.0.0 .
#
# In this repository it builds the example booking worker:
#
#   docker build -f k8s/images/worker.Dockerfile --build-arg PACKAGE=baton-examples \
#     --build-arg BIN=booking-worker --build-arg FEATURES=cluster -t baton/booking-worker:0.1.0 .
#
# The Helm chart runs it as one of `workers:`, with the shared configuration in BATON_CONFIG.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
ARG PACKAGE
ARG BIN
ARG FEATURES=""
# protoc: the Pulsar client compiles its protocol at build time.
RUN apt-get update \
    && apt-get install -y --no-install-recommends protobuf-compiler \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    test -n "$PACKAGE" && test -n "$BIN" \
    && cargo build --release --locked -p "$PACKAGE" --bin "$BIN" --features "$FEATURES" \
    && mkdir -p /out \
    && cp "target/release/$BIN" /out/worker

FROM gcr.io/distroless/cc-debian12:nonroot AS worker
LABEL org.opencontainers.image.title="baton-worker"
USER 65532:65532
COPY --from=build /out/worker /usr/local/bin/worker
# /health, /ready and /metrics (process.health_listen).
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/worker"]
