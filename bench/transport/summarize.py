#!/usr/bin/env python3
"""Median / min / max per (config, phase) from run.sh output."""
import sys, statistics, collections
d = collections.defaultdict(list)
for line in open(sys.argv[1]):
    f = line.rstrip('\n').split('\t')
    if f[2].startswith('#'):
        continue
    d[(f[1], f[2])].append((float(f[3]), float(f[4])))
print(f"{'config':18} {'phase':14} {'n':>2} {'median ops/s':>12} {'min':>8} {'max':>8} {'median us/op':>12}")
for (cfg, phase), v in sorted(d.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    ops = [x[0] for x in v]; us = [x[1] for x in v]
    print(f"{cfg:18} {phase:14} {len(v):>2} {statistics.median(ops):>12.0f} {min(ops):>8.0f} {max(ops):>8.0f} {statistics.median(us):>12.2f}")
