#!/usr/bin/env bash
# Runs the connector end to end on this machine, with no cloud account: builds
# the Spin components, starts the simulators with the demo scenario, runs ticks
# on the test host until every alert is written back, and prints what was written.
#   scripts/demo.sh [--scenario FILE] [--verbose]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"
rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
cargo build --release --target wasm32-wasip2
cargo run --quiet -p demo -- --manifest spin.toml "$@"
