#!/usr/bin/env bash
# Runs every test: the core's unit tests, the simulators', the test host's, and
# the end-to-end suites that run the real .wasm components (both builds: with
# the cron export for spin.toml, without it for spin-http.toml).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"
rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
# The Redis-backed suites (the store SpinKube deployments use) need redis-server.
if ! command -v redis-server >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && apt-get install -y -qq redis-server
    else
        echo "redis-server is missing: install it (e.g. sudo apt-get install redis-server)" >&2
        exit 1
    fi
fi
echo "== building the Spin components (cron build, then HTTP-tick build)"
cargo build --release --target wasm32-wasip2
cargo build --release --target wasm32-wasip2 --no-default-features --target-dir target/http-only
echo "== building the test host's probe fixture"
test-host/build-fixtures.sh
echo "== running the tests"
# The component crates are wasm-only (their code is exercised through the .wasm files).
# --nocapture: the suites print what they covered (fault matrix, crash counts, corpus cases).
cargo test --workspace --exclude poller --exclude vmray --exclude defender --exclude connector-io "$@" -- --nocapture
