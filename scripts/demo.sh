#!/usr/bin/env bash
# The main job: build lathe and run the bundled tiny hybrid model (a Mamba-2 block, a GQA
# attention block and a relu² MLP with synthetic weights) on the reference interpreter.
# It also imports a tiny Nemotron-H checkpoint and computes its logits, and reads the real 8B
# config shape-only. It becomes `lathe compile` + run once the code generator exists.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --profile ci -p lathe
lathe=target/ci/lathe
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
$lathe verify examples/tiny_hybrid.lir
$lathe interp examples/tiny_hybrid.lir --func main --out "$out/out.safetensors"
# A real checkpoint: the tiny nemotron_h fixture made by transformers, and the 8B config shape-only.
$lathe inspect tests/fixtures/models/nemotron_h_tiny --stats
$lathe eval tests/fixtures/models/nemotron_h_tiny --tokens 1,5,9,2,7,3 --out "$out/logits.safetensors"
$lathe inspect tests/fixtures/configs/nemotron-h-8b-base-8k --stats --pipeline default --context 65536
echo "demo: ok"
