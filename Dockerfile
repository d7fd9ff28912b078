# syntax=docker/dockerfile:1.7
#
# The `openagentio` service (and `openagentio-mcp-demo`, the MCP demo server)
# in a slim Debian image.
#
#   docker build -t openagentio:0.1.0 .
#   docker run --rm -p 8080:8080 openagentio:0.1.0                  # the built-in echo config
#   docker run --rm -p 8080:8080 -v $PWD/my.yaml:/etc/openagentio/config.yaml:ro \
#       -e MATRIX_TOKEN openagentio:0.1.0                           # your config; secrets from the environment
#
# Config:  /etc/openagentio/config.yaml (mount yours over it; `${VAR}` and
#          `${VAR:-default}` in string values are read from the environment,
#          which is where secrets belong).
# State:   /var/lib/openagentio (OPENAGENTIO_STATE_DIR; the Matrix bridge keeps its
#          sync token and session under matrix/): mount a volume there.
# Gateway: the default config listens on 0.0.0.0:8080; HEALTHCHECK asks
#          /healthz there (set OPENAGENTIO_HEALTH_URL when yours listens elsewhere).
# User:    openagentio (uid 10001), never root.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# --- build ----------------------------------------------------------------------
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY . .
# The registry, git checkouts and target directory live in cache mounts, so a
# rebuild after a source change recompiles only what changed. The binaries are
# copied out of the cached target directory, which is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked \
        -p openagentio --bin openagentio \
        -p openagentio-mcp --bin openagentio-mcp-demo \
 && install -D -m 0755 -t /out target/release/openagentio target/release/openagentio-mcp-demo

# --- runtime --------------------------------------------------------------------
FROM debian:${DEBIAN_RELEASE}-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 openagentio \
 && useradd --system --uid 10001 --gid openagentio --home-dir /var/lib/openagentio \
        --no-create-home --shell /usr/sbin/nologin openagentio \
 && install -d -o openagentio -g openagentio -m 0750 /var/lib/openagentio \
 && install -d -m 0755 /etc/openagentio
COPY --from=build /out/ /usr/local/bin/
COPY docker/default-config.yaml /etc/openagentio/config.yaml

ENV OPENAGENTIO_STATE_DIR=/var/lib/openagentio \
    OPENAGENTIO_HEALTH_URL=http://127.0.0.1:8080/healthz
VOLUME ["/var/lib/openagentio"]
WORKDIR /var/lib/openagentio
USER openagentio:openagentio
EXPOSE 8080

HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD curl -fsS -o /dev/null "$OPENAGENTIO_HEALTH_URL" || exit 1

ENTRYPOINT ["openagentio"]
CMD ["run", "-c", "/etc/openagentio/config.yaml"]
