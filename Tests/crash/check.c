/*
 * check: after a crash, does the file system hold what fsync promised?
 *
 *   check DIR MODEL_DIR OPLOG DEADLINE_NS
 *
 * For each file with an fsync in OPLOG that returned before DEADLINE (the
 * latest one counts):
 *   append file (a*), durable length L: it exists, holds at least L bytes,
 *   and all it holds is a prefix of its final content (MODEL_DIR/a0): bytes
 *   past L may come from later appends but must be theirs, byte for byte.
 *   replaced file (r*), durable version V: it holds one whole version
 *   (MODEL_DIR/r0.N), with N >= V.
 * A replaced file with no durable version yet may be missing, but if there
 * it must hold a whole version: each was fsynced before its rename.
 *   xv6fs 3.0.0 file (x*, y*; v3ops.h), durable step S: its size, each
 *   byte checked and each attribute is what one of the states from step S
 *   on has (a byte past a state's size may be 0): what S changed is there,
 *   and nothing not yet written. A file with no durable step may be missing.
 * Prints a line for each failure and "checked N" (N files with a durable
 * state); exit status 1 on any failure.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "v3ops.h"

enum { MAX_FILES = 64 };

struct file { char name[32]; uint64_t durable; int has_durable; };
static struct file files[MAX_FILES];
static int nfiles, failures;

static struct file *file_named(const char *name) {
    for (int i = 0; i < nfiles; i++)
        if (!strcmp(files[i].name, name)) return &files[i];
    if (nfiles == MAX_FILES || strlen(name) >= sizeof files[0].name) return NULL;
    snprintf(files[nfiles].name, sizeof files[0].name, "%s", name);
    return &files[nfiles++];
}

/* The whole file at dir/name, or NULL (errno ENOENT when missing). */
static unsigned char *slurp(const char *dir, const char *name, size_t *size) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return NULL;
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap);
    for (;;) {
        if (n == cap) buf = realloc(buf, cap *= 2);
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) { int e = errno; free(buf); close(fd); errno = e; return NULL; }
        if (r == 0) break;
        n += r;
    }
    close(fd);
    *size = n;
    return buf;
}

static void failed(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void failed(const char *name, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("%s: ", name);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    failures++;
}

static void check_append(const char *dir, const char *model, struct file *f) {
    size_t size, want;
    unsigned char *expect = slurp(model, f->name, &want);
    if (!expect) { failed(f->name, "no model"); return; }
    unsigned char *got = slurp(dir, f->name, &size);
    if (!got) {
        failed(f->name, "%s, but %" PRIu64 " bytes were fsynced", strerror(errno), f->durable);
    } else if (size < f->durable) {
        failed(f->name, "holds %zu bytes, but %" PRIu64 " were fsynced", size, f->durable);
    } else if (size > want) {
        failed(f->name, "holds %zu bytes, more than the %zu ever written", size, want);
    } else if (memcmp(got, expect, size)) {
        size_t at = 0, zeros = 0;
        while (got[at] == expect[at]) at++;
        for (size_t i = at; i < size && !got[i]; i++) zeros++;
        failed(f->name, "holds %zu bytes (%" PRIu64 " fsynced), wrong from byte %zu on%s", size, f->durable, at,
               zeros >= 16 ? " (zeros there)" : "");
    }
    free(got);
    free(expect);
}

/* The version of the replaced file that `got` is, or 0. */
static int version_of(const char *model, const char *name, const unsigned char *got, size_t size, int *latest) {
    int found = 0;
    for (int v = 1;; v++) {
        char vname[4096];
        size_t want;
        snprintf(vname, sizeof vname, "%s.%d", name, v);
        unsigned char *expect = slurp(model, vname, &want);
        if (!expect) { *latest = v - 1; return found; }
        if (want == size && !memcmp(got, expect, size)) found = v;
        free(expect);
    }
}

static void check_replaced(const char *dir, const char *model, struct file *f) {
    size_t size;
    unsigned char *got = slurp(dir, f->name, &size);
    if (!got) {
        if (f->has_durable) failed(f->name, "%s, but version %" PRIu64 " was fsynced", strerror(errno), f->durable);
        return;
    }
    int latest, v = version_of(model, f->name, got, size, &latest);
    if (!v)
        failed(f->name, "holds %zu bytes that are no whole version (of 1..%d)", size, latest);
    else if (f->has_durable && (uint64_t)v < f->durable)
        failed(f->name, "holds version %d, but version %" PRIu64 " was fsynced", v, f->durable);
    free(got);
}

/* Does byte `o` hold a value the states from `step` on allow? */
static int byte_allowed(struct xstate *states, int step, uint64_t o, unsigned char got) {
    for (int j = step; j <= X_STEPS; j++)
        if (o < states[j].size ? states[j].data[o] == got : got == 0) return 1;
    return 0;
}

/* The attribute `name` (kept as `which` 0, 1, 2 in the states): absent or
 * a value that a state from `step` on has. */
static void check_xattr(const char *path, const char *fname, const char *name, int is_small,
                        struct xstate *states, int step) {
    static unsigned char got[1 << 16], want[1 << 16];
    ssize_t n = getxattr(path, name, got, sizeof got);
    if (n < 0 && errno != ENODATA) { failed(fname, "getxattr %s: %s", name, strerror(errno)); return; }
    int round = atoi(fname + 1);
    for (int j = step; j <= X_STEPS; j++) {
        int which = is_small ? states[j].small : states[j].large;
        if (which < 0 && n < 0) return;
        if (which >= 0 && n == (ssize_t)xattr_len(round, which)) {
            xattr_value(round, which, want);
            if (!memcmp(got, want, n)) return;
        }
    }
    if (n < 0) failed(fname, "%s is gone, but was fsynced at step %d", name, step);
    else failed(fname, "%s holds %zd bytes that no state from step %d on has", name, n, step);
}

static void check_x(const char *dir, struct file *f) {
    int round = atoi(f->name + 1), step = f->has_durable ? (int)f->durable : 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, f->name);
    struct stat st;
    if (stat(path, &st) != 0) {
        if (step > 0) failed(f->name, "%s, but step %d was fsynced", strerror(errno), step);
        return;
    }
    struct xstate *states = malloc(sizeof *states * (X_STEPS + 1));
    for (int j = 0; j <= X_STEPS; j++) x_state(round, j, &states[j]);
    size_t size;
    unsigned char *got = slurp(dir, f->name, &size);
    if (!got) {
        failed(f->name, "read: %s", strerror(errno));
    } else if (size < states[step].size || size > states[X_STEPS].size) {
        failed(f->name, "holds %zu bytes, step %d (fsynced) has %" PRIu64, size, step, states[step].size);
    } else {
        for (size_t o = 0; o < size; o++)
            if (!byte_allowed(states, step, o, got[o])) {
                failed(f->name, "byte %zu is %u, which no state from step %d (fsynced) on has%s", o, got[o], step,
                       got[o] == 0 ? " (lost data)" : states[step].data[o] == 0 ? " (not zeroed)" : "");
                break;
            }
    }
    free(got);
    check_xattr(path, f->name, "user.small", 1, states, step);
    check_xattr(path, f->name, "user.large", 0, states, step);
    free(states);
}

static void check_y(const char *dir, struct file *f) {
    int round = atoi(f->name + 1), step = f->has_durable ? (int)f->durable : 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, f->name);
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        if (step > 0) failed(f->name, "%s, but step %d was fsynced", strerror(errno), step);
        return;
    }
    struct stat st;
    fstat(fd, &st);
    if ((uint64_t)st.st_size < y_size(round, step) || (uint64_t)st.st_size > y_size(round, Y_STEPS)) {
        failed(f->name, "size %" PRIu64 ", step %d (fsynced) has %" PRIu64, (uint64_t)st.st_size, step,
               y_size(round, step));
    }
    unsigned char got[Y_LEN];
    for (int w = 1; w <= Y_STEPS; w++) {
        uint64_t at = y_offset(round, w);
        ssize_t n = pread(fd, got, Y_LEN, (off_t)at);
        if (n < 0) { failed(f->name, "pread at %" PRIu64 ": %s", at, strerror(errno)); break; }
        for (ssize_t i = 0; i < n; i++) {
            /* Written by step w: its bytes once w is durable, else theirs or zeros. */
            unsigned char want = feature_byte(100 + round, at + i);
            if (got[i] != want && (w <= step || got[i] != 0)) {
                failed(f->name, "byte %" PRIu64 " (step %d's write) is %u, not %u; step %d was fsynced", at + i, w,
                       got[i], want, step);
                break;
            }
        }
        if (w <= step && n < Y_LEN) failed(f->name, "step %d's write reads %zd bytes of %d", w, n, Y_LEN);
    }
    close(fd);
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: check DIR MODEL_DIR OPLOG DEADLINE_NS\n");
        return 2;
    }
    const char *dir = argv[1], *model = argv[2];
    int64_t deadline = strtoll(argv[4], NULL, 10);
    FILE *oplog = fopen(argv[3], "r");
    if (!oplog) { perror(argv[3]); return 2; }
    int64_t t;
    uint64_t value;
    char name[32];
    while (fscanf(oplog, "%" SCNd64 " %31s %" SCNu64, &t, name, &value) == 3) {
        struct file *f = file_named(name);
        if (!f) { fprintf(stderr, "check: too many files\n"); return 2; }
        /* Each file's fsyncs are logged in order by its one thread. */
        if (t < deadline) f->durable = value, f->has_durable = 1;
    }
    fclose(oplog);

    int checked = 0;
    for (int i = 0; i < nfiles; i++) {
        struct file *f = &files[i];
        if (f->name[0] == 'a' && f->has_durable) check_append(dir, model, f);
        if (f->name[0] == 'r') check_replaced(dir, model, f);
        if (f->name[0] == 'x') check_x(dir, f);
        if (f->name[0] == 'y') check_y(dir, f);
        checked += f->has_durable;
    }
    printf("checked %d\n", checked);
    return failures ? 1 : 0;
}
