#!/usr/bin/env python3
"""Sets an xv6fs image's feature bits in place, as a newer mkfs or module
would: features.py IMAGE COMPAT RO_COMPAT INCOMPAT (numbers, 0x.. allowed).
The superblock's checksum (Checksum.hash, Docs/on-disk-format.md) is redone."""
import sys

MASK = (1 << 64) - 1


def checksum(data, seed=0):
    h = seed ^ 0x9E3779B97F4A7C15
    words = len(data) // 8
    for i in range(words):
        w = int.from_bytes(data[i * 8:i * 8 + 8], "little")
        h = ((h ^ w) * 0xFF51AFD7ED558CCD) & MASK
        h ^= h >> 32
    tail = 0
    for byte in data[words * 8:]:
        tail = ((tail << 8) | byte) & MASK
    h = ((h ^ tail ^ len(data)) * 0xC4CEB9FE1A85EC53) & MASK
    return h ^ (h >> 29)


image, compat, ro_compat, incompat = sys.argv[1], *(int(a, 0) for a in sys.argv[2:5])
with open(image, "r+b") as f:
    f.seek(4096)
    block = bytearray(f.read(4096))
    assert block[0:8] == b"XV6BENTO", "not an xv6fs image"
    assert int.from_bytes(block[120:128], "little") == checksum(bytes(block[0:120])), "bad superblock checksum"
    for offset, value in ((80, compat), (84, ro_compat), (88, incompat)):
        block[offset:offset + 4] = value.to_bytes(4, "little")
    block[120:128] = checksum(bytes(block[0:120])).to_bytes(8, "little")
    f.seek(4096)
    f.write(block)
