# syntax=docker/dockerfile:1
# The pipeline's four binaries in one image (see docker-compose.yml).
#
# Dependencies (RocksDB, librdkafka, Arrow and Parquet: nearly all of the build) are
# built in a layer of their own by cargo-chef from a recipe of the manifests, so a
# change to our sources rebuilds only our crates; the layer is rebuilt when
# Cargo.toml or Cargo.lock change. Base images are pinned; the binaries run as a
# non-root user.

# Debian's toolchain pieces for RocksDB (libclang, for bindgen) and librdkafka (cmake,
# OpenSSL), from the same list the quick start and CI use, and cargo-chef.
FROM rust:1.95.0-bookworm AS chef
COPY scripts/system-deps.sh /tmp/system-deps.sh
RUN bash /tmp/system-deps.sh \
 && rm -rf /var/lib/apt/lists/* \
 && cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

# The recipe: the workspace's manifests and lock file, without its sources.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked \
      -p producer -p processor -p compactor -p serving \
 && mkdir /out \
 && cp target/release/producer target/release/processor \
       target/release/compactor target/release/serving /out/

# Runtime: the binaries, the shared libraries they link (OpenSSL, libstdc++), and
# curl for the healthchecks of docker-compose.yml.
FROM debian:12.8-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 pipeline \
 && mkdir -p /data /landing \
 && chown pipeline /data /landing
COPY --from=build /out/ /usr/local/bin/
COPY config/pipeline.toml /work/config/pipeline.toml
USER pipeline
WORKDIR /work
ENV PIPELINE_DATA_DIR=/data
CMD ["producer", "--help"]
