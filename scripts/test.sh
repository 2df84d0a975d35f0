#!/usr/bin/env bash
# The test job: formatting, lints, then every test of the workspace, each stage timed.
set -euo pipefail
cd "$(dirname "$0")/.."
stage() {
  local name=$1; shift
  local t0=$SECONDS
  echo "== $name"
  "$@"
  echo "== $name: $((SECONDS - t0)) s"
}
stage fmt cargo fmt --all -- --check
stage clippy cargo clippy --workspace --all-targets --profile ci -- -D warnings
stage build cargo test --workspace --profile ci --no-run
stage test cargo test --workspace --profile ci
