#!/usr/bin/env bash
# CTest `mpi_abort`: one failing process of an mpirun launch ends them all with its message. Two
# processes train on a synthetic set whose second val label is bad; at the first validation
# process 1 (which scores the odd entries) fails while process 0 waits for it in the sum of the
# confusion matrices. The launch must end by itself (no timeout), non-zero, with rank 1's
# message naming the file. Usage: mpi_abort.sh MPIRUN_COMMAND... -- APPS_DIR
set -euo pipefail
source "$(dirname "$0")/mpi_launch.sh"
# The second val label becomes a valid PNG of class 7 everywhere (3 classes): found when loaded.
bad=SegmentationClassAug/$(sed -n 2p "$work/data/splits/val.txt").png
python3 - "$work/data/$bad" <<'PY'
import struct, sys, zlib
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
rows = b"".join(b"\0" + bytes([7]) * 40 for _ in range(40))
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 40, 40, 8, 0, 0, 0, 0))
png += chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
open(sys.argv[1], "wb").write(png)
PY
write_config 1 True
set +e
timeout 120 "${mpirun[@]}" "$apps/u2pl_train" --config "$work/config.yaml" --run-dir "$work/run" \
  --device cpu >"$work/out.txt" 2>&1
rc=$?
set -e
cat "$work/out.txt"
if [ $rc -eq 124 ]; then echo "mpi_abort: FAIL: the launch hung (killed after 120 s)"; exit 1; fi
if [ $rc -eq 0 ]; then echo "mpi_abort: FAIL: the launch succeeded despite the bad label"; exit 1; fi
grep -q "u2pl_train: rank 1 of 2: error: .*$bad" "$work/out.txt" ||
  { echo "mpi_abort: FAIL: no error from rank 1 naming $bad"; exit 1; }
if grep -q "u2pl_train: rank 0 of 2: error" "$work/out.txt"; then
  echo "mpi_abort: FAIL: rank 0 reported an error of its own"; exit 1
fi
echo "mpi_abort: ok (exit $rc; rank 1's error ended both processes)"
