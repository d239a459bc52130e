#!/usr/bin/env bash
# The whole test suite: formatting, lints, every test (unit, in-memory protocol, end-to-end with
# real redis-server and C spiped), then a short fuzzing pass over each fuzz target.
# Needs redis-server, redis-tools and spiped on PATH (.ci/run installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test --workspace"
cargo test --workspace --locked

step "fuzz smoke (${FUZZ_SECONDS:=20}s per target)"
FUZZ_SECONDS=$FUZZ_SECONDS CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2} scripts/fuzz-smoke.sh
