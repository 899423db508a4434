/*
 * The xv6fs 3.0.0 part of the crash workload (workload.c -f), and the
 * states it passes through, for check.c.
 *
 * Round r works on two files of its own, one step at a time, each step
 * fsynced before it is logged as durable ("<t> xR STEP", "<t> yR STEP"):
 *   xR: 1 create, write 64 KiB   2 setxattr user.small (100+r bytes)
 *       3 setxattr user.large (3000+r bytes: blocks of its own)
 *       4 fallocate mode 0 [64 KiB, 128 KiB)   5 KEEP_SIZE [128, 256 KiB)
 *       6 punch hole [4196, 20000)   7 zero range [30000, 40000)
 *       8 removexattr user.small   9 user.large replaced (5000+r bytes)
 *   yR: 1 create, 6000 bytes at 5 GiB + r MiB + 1000 (triple indirect)
 *       2 6000 bytes at 1 TiB - 4 MiB + r MiB + 500
 * Each step changes bytes, an attribute or the size, so after a crash
 * check.c can say, for each byte and attribute, which values the states
 * from the durable step on allow.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum { X_STEPS = 9, Y_STEPS = 2, X_SPAN = 256 << 10, Y_LEN = 6000 };

/* Byte `o` of a data pattern (or an attribute value) numbered `what`. */
static inline unsigned char feature_byte(unsigned what, uint64_t o) {
    uint64_t x = (o + 1) * 0x9E3779B97F4A7C15ull ^ (uint64_t)what * 0xBF58476D1CE4E5B9ull;
    return (unsigned char)((x ^ (x >> 29)) >> 24) | 1;  /* never 0: a lost byte reads as 0 */
}

/* Attribute values: small, large version 1 (step 3) and 2 (step 9). */
static inline size_t xattr_len(int round, int which) {
    return which == 0 ? 100 + round : which == 1 ? 3000 + round : 5000 + round;
}
static inline void xattr_value(int round, int which, unsigned char *buf) {
    for (size_t i = 0; i < xattr_len(round, which); i++) buf[i] = feature_byte(1000 + 10 * round + which, i);
}

/* xR after `step` steps: its size and bytes (X_SPAN of them), and which
 * value each attribute has (-1: none; else `which` for xattr_value). */
struct xstate { uint64_t size; int small, large; unsigned char data[X_SPAN]; };

static inline void x_state(int round, int step, struct xstate *s) {
    memset(s, 0, sizeof *s);
    s->small = s->large = -1;
    if (step >= 1) {
        s->size = 64 << 10;
        for (size_t o = 0; o < s->size; o++) s->data[o] = feature_byte(round, o);
    }
    if (step >= 2) s->small = 0;
    if (step >= 3) s->large = 1;
    if (step >= 4) s->size = 128 << 10;  /* the new range reads as zeros */
    /* step 5 keeps the size: nothing to see but st_blocks */
    if (step >= 6) memset(s->data + 4196, 0, 20000 - 4196);
    if (step >= 7) memset(s->data + 30000, 0, 40000 - 30000);
    if (step >= 8) s->small = -1;
    if (step >= 9) s->large = 2;
}

/* yR's two writes. */
static inline uint64_t y_offset(int round, int step) {
    return step == 1 ? (5ull << 30) + ((uint64_t)round << 20) + 1000
                     : (1ull << 40) - (4ull << 20) + ((uint64_t)round << 20) + 500;
}
static inline uint64_t y_size(int round, int step) {
    return step >= 2 ? y_offset(round, 2) + Y_LEN : step == 1 ? y_offset(round, 1) + Y_LEN : 0;
}
