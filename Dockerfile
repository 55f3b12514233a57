# syntax=docker/dockerfile:1
#
# The zoho-token-operator image: a release build in the official Rust image, copied into
# distroless's cc image, which holds glibc, libgcc and CA certificates (for TLS to Zoho) and
# nothing else: no shell, no package manager. It runs as UID 65532 ("nonroot").
#
#   docker build -t zoho-token-operator:0.1.0 .
#   docker run --rm zoho-token-operator:0.1.0 crd    # prints the CRD

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src

# Dependencies first, in a layer that edits of the operator's code do not invalidate: build them
# against stub sources, with the real manifests and lock file. The test-support and benchmark
# crates are workspace members, so their manifests (and stub sources) must be there for Cargo to
# load the workspace; they are never built.
COPY Cargo.toml Cargo.lock ./
COPY tests/testkit/Cargo.toml tests/testkit/
COPY tests/bench/Cargo.toml tests/bench/
RUN mkdir -p src tests/testkit/src tests/bench/src/bin \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs tests/testkit/src/lib.rs tests/bench/src/main.rs tests/bench/src/bin/baseline.rs \
    && cargo build --release --locked --bin zoho-token-operator \
    && rm -rf src

COPY src src
# touch: the real sources must look newer than the stub build, whatever their mtimes.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin zoho-token-operator \
    && cp target/release/zoho-token-operator /zoho-token-operator

# glibc-linked, hence cc-debian12 rather than static-debian12; bookworm (Debian 12) above matches
# its glibc.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /zoho-token-operator /usr/local/bin/zoho-token-operator
USER 65532:65532
# /metrics, /healthz and /readyz.
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/zoho-token-operator"]
