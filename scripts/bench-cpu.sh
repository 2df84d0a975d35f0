#!/usr/bin/env bash
# The CPU benchmark of docs/performance.md: lathe's reference interpreter against transformers'
# forward on one ~50M-parameter nemotron_h checkpoint, 256 tokens, same machine, same threads.
#
#   scripts/bench-cpu.sh [DIR] [ROUNDS] [FAMILY]
#
# Needs .venv with torch + transformers (see tests/fixtures/gen.py). DIR (default
# /tmp/lathe-bench) gets the checkpoint the first time: FAMILY nemotron_h (default, the L2
# benchmark) or qwen2 (an all-attention decoder of the same width). Each round times torch, then lathe, so
# both see the same machine state; on a noisy VM compare the minima, and run several rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-/tmp/lathe-bench}
rounds=${2:-2}
family=${3:-nemotron_h}
py=.venv/bin/python
if [[ ! -x $py ]]; then
    echo "bench-cpu: $py not found; make it with: python3 -m venv .venv && .venv/bin/pip install torch transformers safetensors numpy" >&2
    exit 2
fi
if [[ ! -f $dir/bench_tokens.json ]]; then
    "$py" tests/fixtures/gen.py --bench "$dir" "$family"
fi
cargo bench -p lathe-frontend --bench eval_cpu --no-run 2>/dev/null
for ((r = 1; r <= rounds; r++)); do
    echo "== round $r"
    "$py" tests/fixtures/gen.py --time "$dir" 2>/dev/null
    LATHE_BENCH_DIR=$dir cargo bench -q -p lathe-frontend --bench eval_cpu 2>/dev/null
done
