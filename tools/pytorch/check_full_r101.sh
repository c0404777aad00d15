#!/usr/bin/env bash
# CTest entry `torch`: the full-width ResNet-101 parity check. Needs /usr/bin/python3 with
# Debian's python3-torch; exits 77 (CTest: skipped) without it. Usage: check_full_r101.sh TEST_BINARY
set -uo pipefail
bin=$1
here=$(cd "$(dirname "$0")" && pwd)
if ! /usr/bin/python3 -c "import torch" 2>/dev/null; then
  echo "torch suite skipped: /usr/bin/python3 cannot import torch (U2PL_WITH_TORCH=1 tools/install_deps.sh installs it)"
  exit 77
fi
dump=$(mktemp /tmp/u2pl_full_r101.XXXXXX.safetensors)
trap 'rm -f "$dump"' EXIT
/usr/bin/python3 "$here/gen_model_fixture.py" --full-r101 "$dump" || exit 1
U2PL_QUIET=1 U2PL_FULL_R101="$dump" "$bin" --test-suite=torch
