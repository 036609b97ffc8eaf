"""edgeopt benchmarks: every figure is a ratio against a baseline measured in the same run.

These machines are shared and noisy, so an absolute millisecond means little
from one run to the next; the ratio of two things measured side by side (and
interleaved, where that makes sense) does.  ``python -m bench`` (``make
bench``) runs the areas, prints a markdown table with the targets marked
PASS/MISS and writes ``bench/results/<UTC date>.json``.  Not a test: CI may
run ``--quick`` to keep the code working, and never gates on the numbers.
"""
