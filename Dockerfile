# syntax=docker/dockerfile:1
#
# sidescan images: one target per adapter, one for the conformance suite.
#
#   docker build --target clamav      -t sidescan-clamav .
#   docker build --target trivy       -t sidescan-trivy .
#   docker build --target conformance -t sidescan-conformance .
#
# Every target holds the `sidescan` CLI too (the adapters' HEALTHCHECK uses it). All release
# binaries are compiled once, in the shared `build` stage. The base images are build arguments so
# that a mirror or a locally made base can stand in (scripts/build-images builds and runs every
# target with buildah from bases it makes itself). HEALTHCHECK needs the Docker image format
# (buildah/podman: `--format docker`); OCI images drop it.

ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim
# The Trivy release the project tests against (scripts/install-deps pins the same version).
ARG TRIVY_IMAGE=aquasec/trivy:0.76.0

# ---------------------------------------------------------------------------------------------
FROM ${TRIVY_IMAGE} AS trivy-bin

# ---------------------------------------------------------------------------------------------
# Build: every release binary of the images at once. The Rust image brings gcc and libc6-dev,
# which is all the C code in the tree needs (aws-lc-sys, ring, zstd-sys); the proto crate
# compiles its .proto files with protox, so no protoc.
FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,id=sidescan-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=sidescan-target,sharing=locked,target=/src/target \
    cargo build --release --locked \
        -p sidescan-clamav -p sidescan-trivy -p sidescan-cli -p sidescan-conformance \
        -p sidescan-harbor -p sidescan-watch \
 && install -D -m 0755 -t /out \
        target/release/sidescan target/release/sidescan-clamav \
        target/release/sidescan-trivy target/release/sidescan-conformance \
        target/release/sidescan-harbor target/release/sidescan-watch

# ---------------------------------------------------------------------------------------------
# What every image shares: CA certificates (for https registries), an unprivileged user, the
# CLI and `sidescan-harbor` (Harbor's scanner API in front of a plugin: run the same image with
# `--entrypoint sidescan-harbor`, see deploy/harbor/).
FROM ${RUNTIME_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=https://example.invalid/sidescan
LABEL org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="sidescan"
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
# uid/gid 65532, numeric (runAsNonRoot can verify it without /etc/passwd): the user and group
# deploy/ runs every container with; group 65532 shares clamd's socket and the scratch volume.
# The cache and scratch directories are where deploy/ mounts its volumes; /var/lib/sidescan
# stays traversable for a platform that runs the image under another uid.
# (--no-log-init: no lastlog/faillog entries, which are sparse files as large as the uid.)
RUN groupadd --gid 65532 sidescan \
 && useradd --no-log-init --uid 65532 --gid sidescan --home-dir /var/lib/sidescan \
        --no-create-home --shell /usr/sbin/nologin sidescan \
 && install -d -o 65532 -g 65532 -m 0755 /var/lib/sidescan \
 && install -d -o 65532 -g 65532 -m 0750 /var/lib/sidescan/cache /var/lib/sidescan/scratch
COPY --from=build /out/sidescan /out/sidescan-harbor /usr/local/bin/
ENV HOME=/var/lib/sidescan \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
WORKDIR /var/lib/sidescan

# ---------------------------------------------------------------------------------------------
# What both adapters share: listen on every interface inside the container, cache and scratch
# in directories the user owns (mount a volume on /var/lib/sidescan/cache to keep the blob and
# layer-result cache across restarts), health from the CLI. Each target ends as user 65532.
FROM runtime AS plugin
ENV SIDESCAN_LISTEN=0.0.0.0:50051 \
    SIDESCAN_CACHE_DIR=/var/lib/sidescan/cache \
    SIDESCAN_SCRATCH_DIR=/var/lib/sidescan/scratch
# 50051: the gRPC API (plus grpc.health.v1 and reflection); 9090: the optional Prometheus
# endpoint, off unless SIDESCAN_METRICS_LISTEN=0.0.0.0:9090 (or --metrics-listen) is set.
EXPOSE 50051 9090
# Follows the adapter's engine readiness (clamd PING, Trivy DB). It dials 127.0.0.1:50051: when
# SIDESCAN_LISTEN moves to another port, a unix socket or TLS, give the container its own check.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["sidescan", "health", "--plugin", "http://127.0.0.1:50051", "--connect-timeout", "3s", "--timeout", "5s"]

# ---------------------------------------------------------------------------------------------
# The conformance suite: a one-shot client, so no HEALTHCHECK (it serves nothing).
#   docker run --rm --network host sidescan-conformance --endpoint http://127.0.0.1:50051
FROM runtime AS conformance
LABEL org.opencontainers.image.title="sidescan-conformance" \
      org.opencontainers.image.description="Checks that a scanner plugin honours the sidescan.v1 API"
COPY --from=build /out/sidescan-conformance /usr/local/bin/sidescan-conformance
USER 65532:65532
ENTRYPOINT ["sidescan-conformance"]
CMD ["--help"]

# ---------------------------------------------------------------------------------------------
# Scan on push: registry events in on 8090 (POST /events, GET /healthz, /metrics), every
# SIDESCAN_WATCH_PLUGINS plugin scans, reports attached to the image as OCI referrers. It keeps
# no state of its own (the registry is the state), so it needs no volume.
#   docker run sidescan-watch --registry http://registry:5000 --plugin http://clamav:50051
FROM runtime AS watch
LABEL org.opencontainers.image.title="sidescan-watch" \
      org.opencontainers.image.description="Scans every pushed image with sidescan plugins and attaches the reports to it in the registry"
COPY --from=build /out/sidescan-watch /usr/local/bin/sidescan-watch
ENV SIDESCAN_WATCH_LISTEN=0.0.0.0:8090
EXPOSE 8090
# The watcher's own readiness (registry and plugins answer), through its HTTP endpoint.
HEALTHCHECK --interval=30s --timeout=10s --start-period=20s --retries=3 \
    CMD ["sidescan-watch", "--check-health", "http://127.0.0.1:8090"]
USER 65532:65532
ENTRYPOINT ["sidescan-watch"]

# ---------------------------------------------------------------------------------------------
# The Trivy adapter with the Trivy CLI. The vulnerability DB lives in /var/lib/trivy/db: mount a
# volume there so it survives restarts. Without a DB the adapter downloads one on start
# (NOT_SERVING until it is there); air-gapped, put a DB in the volume and set
# SIDESCAN_TRIVY_SKIP_DB_UPDATE=true. SIDESCAN_TRIVY_DB_UPDATE_INTERVAL=12h keeps it fresh.
FROM plugin AS trivy
LABEL org.opencontainers.image.title="sidescan-trivy" \
      org.opencontainers.image.description="sidescan.v1 scanner plugin running Trivy (vulnerabilities, secrets, SBOM)"
COPY --from=trivy-bin /usr/local/bin/trivy /usr/local/bin/trivy
COPY --from=build /out/sidescan-trivy /usr/local/bin/sidescan-trivy
RUN install -d -o 65532 -g 65532 -m 0750 /var/lib/trivy
ENV SIDESCAN_TRIVY_CACHE_DIR=/var/lib/trivy
USER 65532:65532
ENTRYPOINT ["sidescan-trivy"]

# ---------------------------------------------------------------------------------------------
# The ClamAV adapter. clamd is not in this image: run it in a container of its own and share
# its socket directory as a volume on /run/clamav (SIDESCAN_CLAMD, default
# unix:/run/clamav/clamd.ctl; deploy/ uses clamd.sock, group 65532, mode 660), or set
# SIDESCAN_CLAMD=tcp://HOST:3310.
FROM plugin AS clamav
LABEL org.opencontainers.image.title="sidescan-clamav" \
      org.opencontainers.image.description="sidescan.v1 scanner plugin scanning images for malware with clamd"
COPY --from=build /out/sidescan-clamav /usr/local/bin/sidescan-clamav
USER 65532:65532
ENTRYPOINT ["sidescan-clamav"]
