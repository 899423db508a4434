#!/usr/bin/env python3
"""Where a bento-upgraded worker's CPU time goes, per file system operation.

Reads `perf script` output of the worker (perf record -g -F HZ -p PID) on
stdin and sorts every sample by its call chain: the module call it is under
(BentoKit's FileSystem protocol, e.g. write, setattr), split further when
under the log's commit or the operation journal; the reply's writev (which
wakes the caller); the read(2) of the request; the loop thread's polling
for the next request (idle: poll(2) and the clock it reads between polls;
module work the reading thread does meanwhile, such as FORGETs kept for
after the reply, counts as that module call);
the rest of the host (libfuse's dispatch, the gate, the request counts);
and the buffer cache's writer thread, which writes committed blocks home
beside the requests (its samples are no request's).

Usage: perf script -i perf.data | worker-time.py HZ COUNT
prints each part as microseconds per COUNT (files, entries, requests) and as
a share of the samples.
"""
import collections
import re
import sys

# A protocol requirement in a Swift symbol, called through the protocol
# (dispatch thunk) or reached through a conformance's witness: its name after
# its length. The outermost in a chain is the module's FileSystem operation
# (inner ones are its buffer cache's).
OPERATION = re.compile(r"(?:10FileSystemP|AadEP)([0-9]+)([a-zA-Z_]+)")


def part(chain):
    text = "\n".join(chain)
    if "WriteQueue" in text:
        return "writer thread: home writes, beside the requests"
    if "writev" in text:
        return "reply: writev (wakes the caller)"
    if "ksys_read" in text:
        return "read(2) of the request"
    calls = OPERATION.findall(text)
    if not calls:
        if "__poll" in text or "FuseServerC8customIO" in text:
            return "idle: polling for the next request"
        return "host: other"
    length, rest = calls[-1]
    name = "module: " + rest[:int(length)]
    if "WriteAheadLogC6commit" in text:
        return name + " (log commit)"
    if "SharedMemoryJournal" in text:
        return name + " (operation journal)"
    return name


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: perf script -i perf.data | worker-time.py HZ COUNT")
    hz, count = float(sys.argv[1]), float(sys.argv[2])
    parts = collections.Counter()
    chain = []
    for line in sys.stdin:
        line = line.rstrip("\n")
        if not line.strip():
            if chain:
                parts[part(chain)] += 1
            chain = []
        elif line[0] in "\t ":
            chain.append(line.strip())
    if chain:
        parts[part(chain)] += 1
    total = sum(parts.values())
    if not total:
        sys.exit("worker-time.py: no samples with call chains (perf record -g)")
    print(f"{total / hz:.2f} s sampled; per one of {count:.0f}")
    for name, samples in parts.most_common():
        print(f"{samples / hz / count * 1e6:8.1f} µs {100 * samples / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
