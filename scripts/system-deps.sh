#!/usr/bin/env bash
# Debian packages the build needs (and, with --tests, the tests): libclang for
# RocksDB's bindings (bindgen), a C++ compiler, cmake, pkg-config, OpenSSL and curl
# headers for librdkafka (built from source by rdkafka-sys); for the tests, Debian's
# Chromium (the dashboard's headless browser test). Installs what is missing when run
# as root with apt-get; otherwise says what to install and fails.
set -euo pipefail
need=()
dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
command -v c++ >/dev/null 2>&1 || need+=(g++)
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
dpkg -s libssl-dev >/dev/null 2>&1 || need+=(libssl-dev)
dpkg -s libcurl4-openssl-dev >/dev/null 2>&1 || need+=(libcurl4-openssl-dev)
if [ "${1:-}" = "--tests" ]; then
  [ -x /usr/bin/chromium ] || need+=(chromium)
fi
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
else
  echo "the build needs these Debian packages: sudo apt-get install ${need[*]}" >&2
  exit 1
fi
