#!/usr/bin/env bash
# Installs what lathe's build and tests need on a fresh Debian machine with Rust.
# Today that is only the Rust toolchain's own components; later stages (LLVM 22 for PTX,
# the ptxas wheel) are added here so the README's commands stay true.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust (rustup) first" >&2; exit 1; }
if command -v rustup >/dev/null; then
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
fi
echo "setup: ok ($(cargo --version))"
