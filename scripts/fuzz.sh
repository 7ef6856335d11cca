#!/usr/bin/env bash
# Runs every fuzz target for a bounded time: scripts/fuzz.sh [seconds per target] [target…]
# (default 10 s each, all targets). Needs the nightly toolchain and cargo-fuzz; installs
# them when missing (rustup toolchain install nightly --profile minimal; cargo install
# cargo-fuzz --locked). A crash leaves its input in fuzz/artifacts/<target>/ and fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"
export PATH="$HOME/.cargo/bin:$PATH"
secs="${1:-10}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(alert_parse url_normalize hunting vmray_parse render)
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked
cargo +nightly fuzz build
for t in "${targets[@]}"; do
  echo "== fuzzing $t for ${secs}s"
  mkdir -p "corpus/$t"
  cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -max_len=65536 2>&1 \
    | grep -E '^(Done|INFO: Seed|==[0-9]+==|SUMMARY|thread)' || true
  if [ -n "$(ls -A "artifacts/$t" 2>/dev/null)" ]; then
    echo "fuzz target $t crashed: inputs in fuzz/artifacts/$t/ (copy one to fuzz/corpus/$t/crash-<name> for the stable replay test)"
    exit 1
  fi
done
echo "fuzzing done: ${#targets[@]} targets × ${secs}s, no crash"
