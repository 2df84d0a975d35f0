#!/usr/bin/env bash
# Installs what lathe's build and tests need on a fresh Debian 12 machine with Rust:
#   - rustfmt and clippy (the test job lints);
#   - LLVM 22 (static libraries, for inkwell's NVPTX backend) and what its static link needs;
#   - ptxas 12.9.86 from NVIDIA's PyPI wheel, unpacked into tools/ptxas (git-ignored), which
#     assembles the PTX codegen emits and reports registers and spills. $LATHE_PTXAS overrides it.
# Idempotent: what is there already is kept. Needs root (or sudo) only when packages are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust (rustup) first" >&2; exit 1; }
if command -v rustup >/dev/null; then
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
fi

# LLVM 22.1 comes from Debian's bookworm-security pocket. LLVM 19 (bookworm main, `llvm-19-dev
# libpolly-19-dev` with inkwell's `llvm19-1` feature and LLVM_SYS_191_PREFIX) is the documented
# fallback, untested.
packages=(llvm-22-dev libpolly-22-dev zlib1g-dev libzstd-dev python3 python3-pip)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "setup: need root to install: ${missing[*]}" >&2; exit 1; }
    sudo=sudo
  fi
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ -x /usr/lib/llvm-22/bin/llvm-config ] || { echo "setup: /usr/lib/llvm-22/bin/llvm-config missing" >&2; exit 1; }

# ptxas, pinned: the wheel's bin/ holds only ptxas ("release 12.9, V12.9.86"); it accepts PTX
# .version up to 8.8.
ptxas_version=12.9.86
ptxas_dir=tools/ptxas
if [ ! -x "$ptxas_dir/bin/ptxas" ] || ! "$ptxas_dir/bin/ptxas" --version 2>/dev/null | grep -q "V$ptxas_version"; then
  echo "setup: fetching ptxas $ptxas_version"
  rm -rf "$ptxas_dir" tools/.wheel
  mkdir -p tools/.wheel "$ptxas_dir/bin"
  python3 -m pip download -q --no-deps --only-binary=:all: --dest tools/.wheel \
    "nvidia-cuda-nvcc-cu12==$ptxas_version"
  python3 -m zipfile -e tools/.wheel/nvidia_cuda_nvcc_cu12-"$ptxas_version"-*.whl tools/.wheel/unpacked
  cp tools/.wheel/unpacked/nvidia/cuda_nvcc/bin/ptxas "$ptxas_dir/bin/ptxas"
  chmod +x "$ptxas_dir/bin/ptxas"
  rm -rf tools/.wheel
fi
echo "setup: ok ($(cargo --version); LLVM $(/usr/lib/llvm-22/bin/llvm-config --version); ptxas $("$ptxas_dir/bin/ptxas" --version | grep -o "V[0-9][0-9.]*" | tail -1))"
