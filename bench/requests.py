#!/usr/bin/env python3
"""Requests the xv6 mount served per unit of each workload, for bench/run.sh.

Usage: requests.py DIR FORMAT (text or md). DIR holds, per workload NAME,
status.NAME.json (`bentoctl status --json` after the workload's first run,
on the mount it had to itself) and status.NAME.units ("COUNT UNIT"). The
rm -rf ran on the untar's mount: its counts are those after it less the
untar's.
"""
import json
import os
import sys

WORKLOADS = [
    ("meta1", "create + stat + unlink, 1 thread"),
    ("meta8", "create + stat + unlink, 8 threads"),
    ("randwrite", "4 KiB random write + fsync"),
    ("seqread", "sequential read, cold"),
    ("untar", "untar"),
    ("rmrf", "rm -rf"),
]
BASE = {"rmrf": "untar"}


def operations(directory, name):
    with open(os.path.join(directory, f"status.{name}.json")) as f:
        return json.load(f)["mounts"][0]["operations"]


def main():
    directory, fmt = sys.argv[1], sys.argv[2]
    rows = []
    for name, label in WORKLOADS:
        try:
            ops = operations(directory, name)
            with open(os.path.join(directory, f"status.{name}.units")) as f:
                count, unit = f.read().split(maxsplit=1)
            if name in BASE:
                before = operations(directory, BASE[name])
                ops = {k: v - before.get(k, 0) for k, v in ops.items()}
        except (OSError, ValueError, KeyError, IndexError):
            continue
        count = max(int(count), 1)
        unit = unit.strip()
        total = sum(ops.values())
        top = sorted(((v, k) for k, v in ops.items() if v / count >= 0.005), reverse=True)[:6]
        detail = ", ".join(f"{k} {v / count:.2f}" for v, k in top)
        rows.append((label, unit, f"{total / count:.2f}", detail))
    if not rows:
        return
    if fmt == "md":
        print("| workload | per | requests | by operation |")
        print("|---|---|---:|---|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        for label, unit, total, detail in rows:
            print(f"{label:36} {total:>7} per {unit}: {detail}")


if __name__ == "__main__":
    main()
