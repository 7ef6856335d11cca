#!/usr/bin/env bash
# Builds the guest fixtures the test host's tests run (test-host/tests/).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
cargo build --release --target wasm32-wasip2 \
    --manifest-path "$here/fixtures/probe/Cargo.toml" \
    --target-dir "${FIXTURES_TARGET_DIR:-$here/fixtures/target}"
mkdir -p "$here/fixtures/wasm"
cp "${FIXTURES_TARGET_DIR:-$here/fixtures/target}/wasm32-wasip2/release/probe.wasm" "$here/fixtures/wasm/probe.wasm"
echo "built $here/fixtures/wasm/probe.wasm"
