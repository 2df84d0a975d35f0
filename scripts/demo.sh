#!/usr/bin/env bash
# The main job: build lathe and run the bundled tiny hybrid model (a Mamba-2 block, a GQA
# attention block and a relu² MLP with synthetic weights) on the reference interpreter.
# It becomes `lathe compile` + run once the code generator exists.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --profile ci -p lathe
lathe=target/ci/lathe
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
$lathe verify examples/tiny_hybrid.lir
$lathe interp examples/tiny_hybrid.lir --func main --out "$out/out.safetensors"
echo "demo: ok"
