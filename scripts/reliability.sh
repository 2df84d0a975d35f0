#!/usr/bin/env bash
# Writes docs/reliability.md: every class of bad input the reliability test tries
# (compiler/tests/reliability.rs), with its cases and outcomes. The test itself runs in CI on
# every change; this script only keeps the table. Reproducible: the cases are fixed and the
# table names no machine-specific path.
set -euo pipefail
cd "$(dirname "$0")/.."
LATHE_RELIABILITY_TABLE="$PWD/docs/reliability.md" \
  cargo test --profile ci -p lathe --test reliability -- --test-threads 1
echo "wrote docs/reliability.md"
