#!/usr/bin/env bash
# Stage bench/gpu_ort.py's data for the H200 beside the onnxruntime-gpu wheel parts (bench/README.md, "GPU").
# Run from the repository root the device tool copies, after ../shared/gpu/prepare-ort-gpu.sh:
#   bash bench/gpu_ort_stage.sh DATA      (DATA: what `python -m bench.gpu_ort_prep DATA` wrote)
# A transfer carries at most 64 MiB with the tracked tree (~2 MiB), so the tar of DATA is split into
# ignored folders .gpub0..4 (9 MiB, each carried with .gpu0..4), then 60 MiB parts .gpub5.. and the script
# in .gpub_run. Calls: `mkdir -p /tmp/gw /tmp/gb && mv .gpuN/* /tmp/gw/ && mv .gpubN/* /tmp/gb/`, then
# `mv .gpubN/* /tmp/gb/` for the rest, the last one carrying .gpu5 and .gpub_run too:
#   . .gpu5/install.sh && cat /tmp/gb/part.* | tar -x -C /tmp && python3 .gpub_run/gpu_ort.py /tmp/data $OUT
set -euo pipefail
data=$(cd "$1" && pwd)
root=$(git rev-parse --show-toplevel)
rm -rf "$root"/.gpub[0-9] "$root/.gpub_run"
mkdir -p "$root/.gpub_run"
tmp=$(mktemp -d)
tar -C "$(dirname "$data")" --exclude=_work --exclude='*.occ.onnx' -cf "$tmp/data.tar" "$(basename "$data")"
head -c $((45 * 1024 * 1024)) "$tmp/data.tar" | (cd "$tmp" && split -b 9M -d -a 1 - small.)
tail -c +$((45 * 1024 * 1024 + 1)) "$tmp/data.tar" | (cd "$tmp" && split -b 60M -d -a 1 - big.)
i=0
for p in "$tmp"/small.* "$tmp"/big.*; do
  [ -s "$p" ] || continue
  mkdir -p "$root/.gpub$i"; mv "$p" "$root/.gpub$i/part.$(printf %02d $i)"; i=$((i + 1))
done
cp "$root/bench/gpu_ort.py" "$root/.gpub_run/"
rm -rf "$tmp"
du -sh "$root"/.gpub[0-9] "$root/.gpub_run" | tr '\n' ' '; echo
