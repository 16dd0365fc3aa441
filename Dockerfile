# The pipeline's four binaries in one image (see docker-compose.yml).
# Build stage: Debian's toolchain pieces for RocksDB (libclang, for bindgen) and
# librdkafka (cmake, OpenSSL), from the same list the quick start and CI use.
FROM rust:1-bookworm AS build
COPY scripts/system-deps.sh /tmp/system-deps.sh
RUN bash /tmp/system-deps.sh && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked \
      -p producer -p processor -p compactor -p serving \
 && mkdir /out \
 && cp target/release/producer target/release/processor \
       target/release/compactor target/release/serving /out/

# Runtime stage: the binaries and the shared libraries they link (OpenSSL, libstdc++).
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
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
