#!/usr/bin/env bash
# The connector's benchmark: fixed scenarios (10, 1,000 and 10,000 alerts; 0 %
# and 60 % URL reuse) on the test host against the simulators. Prints one
# table: API economy next to a model of the vendor's connector, speed inside
# the components, size and start-up, store use. Never fails on a figure.
#   scripts/bench.sh [--json FILE] [--scenarios small|all] [--write-baseline]
# --write-baseline rewrites bench/baseline-10.json (the 10-alert call counts
# that `cargo test -p bench` checks).
# CARGO_TARGET_DIR chooses where the native benchmark is built (as for cargo).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"
rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
# The components, as Spin builds them (release, wasm32-wasip2, into target/).
(unset CARGO_TARGET_DIR; cargo build --quiet --release --target wasm32-wasip2)
cargo build --quiet -p bench
exec "${CARGO_TARGET_DIR:-target}/debug/bench" "$@"
