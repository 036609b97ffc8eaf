#!/usr/bin/env bash
# Stage bench/gpu_ort.py's data and the onnxruntime-gpu wheel for the H200 (bench/README.md, "GPU").
# Run from the repository root:  bash bench/gpu_ort_stage.sh DATA WHEEL
#   DATA: what `python -m bench.gpu_ort_prep DATA` wrote; WHEEL: the onnxruntime-gpu wheel
#   (../shared/gpu/prepare-ort-gpu.sh downloads it to ~/.cache/ort-gpu).
# One tar (the wheel first, then DATA) split into 58 MiB parts in ignored folders .gpuc0, .gpuc1, ...:
# a transfer carries at most 64 MiB, the tracked tree (~2 MiB) included. One `run` call per part,
# back to back (the machine is given back after 30 s idle):
#   mkdir -p /tmp/gp && mv .gpucN/* /tmp/gp/                                  (carry .gpucN)
# the second-to-last also installs the wheel (its bytes have all arrived by then; tar stops at the cut):
#   ... && (cat /tmp/gp/part.* | tar -x -C /tmp w); pip install -q --no-index --no-deps --target /tmp/site /tmp/w/*.whl
# and the last carries the script too (the sha256 this prints):
#   mv .gpucL/part.* /tmp/gp/ && cat /tmp/gp/part.* > /tmp/p.tar && echo "SUM  /tmp/p.tar" | sha256sum -c &&
#   tar -xf /tmp/p.tar -C /tmp data && PYTHONPATH=/tmp/site python3 .gpucL/gpu_ort.py /tmp/data $OUT
set -euo pipefail
data=$(cd "$1" && pwd)
wheel=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
root=$(git rev-parse --show-toplevel)
grep -qxF '/.gpu*' "$root/.git/info/exclude" 2>/dev/null || echo '/.gpu*' >> "$root/.git/info/exclude"
rm -rf "$root"/.gpuc[0-9]*
tmp=$(mktemp -d)
mkdir "$tmp/w" && ln -s "$wheel" "$tmp/w/$(basename "$wheel")"
tar -C "$tmp" -chf "$tmp/pack.tar" w -C "$(dirname "$data")" --exclude=_work --exclude='*.occ.onnx' "$(basename "$data")"
echo "sha256 $(sha256sum "$tmp/pack.tar" | cut -c1-64)"
(cd "$tmp" && split -b 58M -d -a 2 pack.tar part.)
last=""
for p in "$tmp"/part.*; do
  i=$((10#${p##*.})); mkdir -p "$root/.gpuc$i"; mv "$p" "$root/.gpuc$i/"; last=$i
done
cp "$root/bench/gpu_ort.py" "$root/.gpuc$last/"
rm -rf "$tmp"
du -sh "$root"/.gpuc* | tr '\n' ' '; echo
