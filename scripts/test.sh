#!/usr/bin/env bash
# Runs every test: the core's unit tests, the simulators', the test host's, and
# the end-to-end suites that run the real .wasm components (both builds: with
# the cron export for spin.toml, without it for spin-http.toml).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"
rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
echo "== building the Spin components (cron build, then HTTP-tick build)"
cargo build --release --target wasm32-wasip2
cargo build --release --target wasm32-wasip2 --no-default-features --target-dir target/http-only
echo "== building the test host's probe fixture"
test-host/build-fixtures.sh
echo "== running the tests"
# The component crates are wasm-only (their code is exercised through the .wasm files).
cargo test --workspace --exclude poller --exclude vmray --exclude defender --exclude connector-io "$@"
