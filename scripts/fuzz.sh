#!/usr/bin/env bash
# Runs each cargo-fuzz target of fuzz/ for a bounded time (default 60 s each).
#
# cargo fuzz needs nightly compiler flags; on a machine with only a stable toolchain,
# RUSTC_BOOTSTRAP=1 lets the stable compiler accept them. Seeds come from fuzz/seeds/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
for target in request_bodies records; do
  mkdir -p "fuzz/corpus/$target"
  cp -n fuzz/seeds/"$target"/* "fuzz/corpus/$target/" 2>/dev/null || true
  echo "== fuzzing $target for ${seconds}s"
  (cd fuzz && cargo fuzz run "$target" -- -max_total_time="$seconds" -max_len=65536)
done
