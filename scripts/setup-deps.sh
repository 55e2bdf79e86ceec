#!/usr/bin/env bash
# Installs the system packages raftq builds against, on Debian 12: Debian's RocksDB (linked
# instead of compiling RocksDB from source: ~5 min instead of ~35 min for a clean build),
# libclang for the RocksDB bindings, protoc, Python's gRPC for the test of the wire
# contract from another language, and Chromium with its WebDriver for the web UI's test.
# Skips apt when everything is present.
set -euo pipefail
need=()
[ -e /usr/include/rocksdb/c.h ] || need+=(librocksdb-dev)
# bindgen needs libclang itself (libclang.so*); libclang-cpp, which other packages bring, is
# not enough.
compgen -G '/usr/lib/llvm-*/lib/libclang.so*' >/dev/null || need+=(libclang-dev)
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
[ -e /usr/include/google/protobuf/empty.proto ] || need+=(libprotobuf-dev)
# tests/t14: a client in Python, from raftq.proto alone (the wire contract, docs/protocol.md);
# Debian's python3 (a pyenv python3 on PATH has no Debian packages)
/usr/bin/python3 -c 'import grpc' 2>/dev/null || need+=(python3-grpcio)
/usr/bin/python3 -c 'import google.protobuf' 2>/dev/null || need+=(python3-protobuf)
# tests/t19: the web UI in a real browser, Debian's headless Chromium driven by chromedriver
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup-deps: installing ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
