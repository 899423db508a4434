#!/usr/bin/env python3
"""Fills a file system the way applications do, and checks what stayed.

Every file gets its own pattern: byte o of file NAME is P[o % len(P)], P
random bytes seeded by NAME and of an odd length, so a misplaced block, a
run of zeros or a short prefix all show.

  fill.py write DIR BS FILES...     one writer per file (threads), write()
                                    of BS bytes until an error; prints one
                                    JSON object: per file the bytes
                                    accepted, write()'s errno, close()'s
  fill.py mmap FILE SIZE            ftruncate FILE to SIZE, write the
                                    pattern through a shared mapping, msync;
                                    prints the msync errno (or null)
  fill.py check DIR FILES...        per file: its size, how far it is its
                                    pattern from the start, and what
                                    follows (prints JSON)
  fill.py expect NAME SIZE          the first SIZE bytes of NAME's pattern,
                                    to stdout
"""
import json, mmap, os, random, sys, threading

PATTERN_LENGTH = (1 << 20) + 4093


def pattern(name):
    return random.Random(os.path.basename(name)).randbytes(PATTERN_LENGTH)


def chunk(p, offset, size):
    start = offset % PATTERN_LENGTH
    out = bytearray()
    while len(out) < size:
        take = min(size - len(out), PATTERN_LENGTH - start)
        out += p[start:start + take]
        start = 0
    return bytes(out)


def write_until_error(path, bs):
    p = pattern(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    accepted, write_errno, close_errno = 0, None, None
    while True:
        try:
            n = os.write(fd, chunk(p, accepted, bs))
        except OSError as e:
            write_errno = e.errno
            break
        accepted += n
    try:
        os.close(fd)
    except OSError as e:
        close_errno = e.errno
    return {"accepted": accepted, "write_errno": write_errno, "close_errno": close_errno}


def write(directory, bs, names):
    results = {}

    def one(name):
        results[name] = write_until_error(os.path.join(directory, name), bs)
    threads = [threading.Thread(target=one, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(results, sort_keys=True))


def write_mapped(path, size):
    p = pattern(path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    os.ftruncate(fd, size)
    m = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    step = 1 << 20
    for offset in range(0, size, step):
        n = min(step, size - offset)
        m[offset:offset + n] = chunk(p, offset, n)
    error = None
    try:
        m.flush()
    except OSError as e:
        error = e.errno
    m.close()
    try:
        os.close(fd)
    except OSError as e:
        error = error or e.errno
    print(json.dumps({"msync_errno": error}))


def check(directory, names):
    """Per file, page by page: how far it is its pattern from the start
    (prefix); after that, zero pages (holes), pages of the pattern in
    their place (data after a hole), and wrong pages (anything else)."""
    page = 4096
    results = {}
    for name in names:
        p = pattern(name)
        with open(os.path.join(directory, name), "rb") as f:
            data = f.read()
        counts = {"size": len(data), "prefix": 0, "zero_pages": 0, "data_after_hole": 0, "wrong_pages": 0}
        for offset in range(0, len(data), page):
            piece = data[offset:offset + page]
            if piece == chunk(p, offset, len(piece)):
                if counts["prefix"] == offset:
                    counts["prefix"] = offset + len(piece)
                else:
                    counts["data_after_hole"] += 1
            elif piece.count(0) == len(piece):
                counts["zero_pages"] += 1
            else:
                counts["wrong_pages"] += 1
        results[name] = counts
    print(json.dumps(results, sort_keys=True))


def main():
    command = sys.argv[1]
    if command == "write":
        write(sys.argv[2], int(sys.argv[3]), sys.argv[4:])
    elif command == "mmap":
        write_mapped(sys.argv[2], int(sys.argv[3]))
    elif command == "check":
        check(sys.argv[2], sys.argv[3:])
    elif command == "expect":
        sys.stdout.buffer.write(chunk(pattern(sys.argv[2]), 0, int(sys.argv[3])))
    else:
        sys.exit(f"fill.py: unknown command {command}")


if __name__ == "__main__":
    main()
