#!/usr/bin/env bash
# bench/gpu.sh: the engine benchmark on a CUDA machine that has no network (the `device`
# machine of this workplace). What it needs travels in .device/ (ignored by git):
#   .device/gitRelease.bundle   llama/gitRelease.bundle from node-llama-cpp (scripts/deps.env)
#   .device/debs/*.deb          Debian packages of what the build links and the machine may lack
#                               (jansson, libcurl, libmicrohttpd, hiredis, toml11, pkgconf), used
#                               only for what the machine lacks
#
#   bench/gpu.sh prepare        (here, after scripts/setup) fill .device/ and git-ignore it
#   bench/gpu.sh build          scripts/setup --cuda --no-apt (llama.cpp + Sipp: no tests, no
#                               browser host, no bindings)
#   bench/gpu.sh run [SHAPE]    make a random SHAPE model (default llama-1b q4_k_m) and run
#                               sipp-bench-engine on the GPU; results go to $OUT if set
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
deps=/tmp/sipp-deps
export SIPP_CACHE_DIR=/tmp/sipp-cache  # outside the tree: carried paths are replaced each call
export SIPP_LLAMA_BUNDLE=$root/.device/gitRelease.bundle

if [ "${1:-}" = prepare ]; then
  . scripts/deps.env
  mkdir -p .device/debs .git/info
  grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude
  tar -xzf "${XDG_CACHE_HOME:-$HOME/.cache}/sipp/npm/node-llama-cpp-$NODE_LLAMA_CPP_VERSION.tgz" \
    -O package/llama/gitRelease.bundle > .device/gitRelease.bundle
  (cd .device/debs && apt-get download -q pkgconf pkgconf-bin libpkgconf3 pkg-config libjansson4 \
    libjansson-dev libcurl4 libcurl4-openssl-dev libssl-dev libssl3 libnghttp2-14 libpsl5 librtmp1 \
    libssh2-1 libbrotli1 libldap-2.5-0 libsasl2-2 libsasl2-modules-db libidn2-0 libunistring2 \
    libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 libkeyutils1 libcom-err2 libgnutls30 \
    libhogweed6 libnettle8 libp11-kit0 libtasn1-6 libffi8 libdb5.3 libzstd1 \
    libmicrohttpd12 libmicrohttpd-dev libhiredis0.14 libhiredis-dev libtoml11-dev \
    2>&1 | grep -v '^W:' || true)
  du -sh .device
  exit 0
fi

bring_deps() {
  [ -d "$deps/lib" ] && return 0
  mkdir -p "$deps/root" "$deps/lib"
  for f in .device/debs/*.deb; do
    if command -v dpkg >/dev/null; then dpkg -x "$f" "$deps/root"
    else (cd "$deps" && ar x "$root/$f" data.tar.xz && tar -xJf data.tar.xz -C root && rm data.tar.xz); fi
  done
  # Only the shared libraries this machine lacks are made visible.
  for so in "$deps"/root/usr/lib/x86_64-linux-gnu/*.so.* "$deps"/root/lib/x86_64-linux-gnu/*.so.*; do
    [ -e "$so" ] || continue
    n=$(basename "$so")
    ldconfig -p | grep -q " $n " || ln -sf "$so" "$deps/lib/$n"
  done
}

bring_deps
# The debs' .pc files as a machine without their -dev closure can use them (idempotent):
# libmicrohttpd's names gnutls as Requires.private (only static links need it), hiredis's names
# /usr/lib while the library is in the multiarch directory.
sed -i '/^Requires.private:/d' "$deps"/root/usr/lib/x86_64-linux-gnu/pkgconfig/libmicrohttpd.pc
sed -i 's|^libdir=/usr/lib$|libdir=/usr/lib/x86_64-linux-gnu|' \
  "$deps"/root/usr/lib/x86_64-linux-gnu/pkgconfig/hiredis.pc
export LD_LIBRARY_PATH=$deps/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PATH=$PATH:$deps/root/usr/bin
export PKG_CONFIG_SYSROOT_DIR=$deps/root
export PKG_CONFIG_LIBDIR=$deps/root/usr/lib/x86_64-linux-gnu/pkgconfig:$deps/root/usr/share/pkgconfig
# toml11 is header-only and has no .pc file: its headers alone, not the rest of the debs' include/
if [ ! -f /usr/include/toml.hpp ] && [ -f "$deps/root/usr/include/toml.hpp" ]; then
  mkdir -p "$deps/toml-include"
  ln -sfn "$deps/root/usr/include/toml.hpp" "$deps/toml-include/toml.hpp"
  ln -sfn "$deps/root/usr/include/toml" "$deps/toml-include/toml"
  export CPLUS_INCLUDE_PATH=$deps/toml-include${CPLUS_INCLUDE_PATH:+:$CPLUS_INCLUDE_PATH}
fi

case "${1:-}" in
  build)
    nvidia-smi -L || true
    # The gateway links libmicrohttpd, hiredis and toml11 (header-only): from .device/debs when
    # the machine lacks them. No emscripten, Node headers or cargo there: no browser host and no
    # bindings; the benchmark needs neither.
    SIPP_WASM=0 SIPP_CMAKE_ARGS="-DSIPP_BUILD_TESTS=OFF -DSIPP_BINDINGS=OFF" SIPP_BUILD_TYPE=Release \
      scripts/setup --cuda --no-apt
    ;;
  run)
    shape=${2:-llama-1b}
    model=/tmp/sipp-$shape-q4_k_m.gguf
    src=$(ls -d "$SIPP_CACHE_DIR"/llama.cpp/src-*)
    [ -f "$model" ] || SIPP_LLAMA_SRC=$src build/bin/sipp-make-model --shape "$shape" --type q4_k_m --out "$model"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    build/bin/sipp-bench-engine --model "$model" --gpu-layers 999 --threads 8 \
      --scenarios "${BENCH_SCENARIOS:-single,mixed}" --reps 5 | tee "${OUT:-/tmp}/bench-gpu-$shape.md"
    ;;
  *) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
