/*
 * crashimages: what an image can hold after a power loss, from record.so's
 * log of the writes and flushes made to it.
 *
 *   crashimages info LOG
 *       "writes W flushes F": F completed flushes, so cuts 0..F.
 *   crashimages build BASE LOG CUT SUBSET OUT
 *       OUT = BASE (the image before the daemon started) with the writes
 *       known durable at cut CUT, plus SUBSET of the writes after it:
 *       "none", "all", or a number, the seed of a random half.
 *       Prints "deadline NS window N applied M".
 *
 * Cut k (1..F): flush k returned, flush k+1 has not started. Every write
 * that returned before flush k started is durable; any subset of the
 * writes after that and before flush k+1 started may have reached the
 * disk, each whole, in order. Cut 0: no flush yet; cut F: after the last.
 * A power loss just before flush k+1 starts can leave such an image, when
 * every fsync that returned before that start had returned: DEADLINE is
 * that time (CLOCK_MONOTONIC ns; INT64_MAX after the last flush), and
 * every fsync logged before it must find its data in OUT.
 * A failed flush guarantees nothing and sync_file_range is no barrier:
 * neither makes a cut.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "record.h"

struct write { uint64_t seq, offset, len; const unsigned char *data; };
struct flush { uint64_t seq; int64_t t0; };

static struct write *writes;
static struct flush *flushes;
static size_t nwrites, nflushes;

static void die(const char *what) {
    perror(what);
    exit(2);
}

static int by_seq(const void *a, const void *b) {
    uint64_t x = ((const struct flush *)a)->seq, y = ((const struct flush *)b)->seq;
    return x < y ? -1 : x > y;
}

/* Reads the log. Writes are logged in sequence order; a flush is logged
 * when it returns, after writes that came after its start: sort them. */
static void load(const char *path) {
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) die(path);
    size_t size = st.st_size, at = 0;
    const unsigned char *log = size ? mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
    if (size && log == MAP_FAILED) die("mmap");
    size_t wcap = 0, fcap = 0;
    while (at + sizeof(struct rec) <= size) {
        struct rec r;
        memcpy(&r, log + at, sizeof r);
        if (r.magic != REC_MAGIC) {
            fprintf(stderr, "crashimages: %s: bad record at byte %zu\n", path, at);
            exit(2);
        }
        at += sizeof r;
        if (r.type == REC_WRITE) {
            if (at + r.len > size) break;  /* cut short: the last write never completed */
            if (nwrites == wcap) writes = realloc(writes, (wcap = wcap * 2 + 1024) * sizeof *writes);
            writes[nwrites++] = (struct write){ r.seq, r.offset, r.len, log + at };
            at += r.len;
        } else if (r.type == REC_FLUSH && r.result == 0) {
            if (nflushes == fcap) flushes = realloc(flushes, (fcap = fcap * 2 + 256) * sizeof *flushes);
            flushes[nflushes++] = (struct flush){ r.seq, r.t0 };
        }
    }
    qsort(flushes, nflushes, sizeof *flushes, by_seq);
}

static uint64_t mix(uint64_t x) {  /* splitmix64 */
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static void copy(const char *from, const char *to) {
    int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (in < 0 || out < 0) die(in < 0 ? from : to);
    static char buf[1 << 20];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0)
        if (write(out, buf, n) != n) die(to);
    if (n < 0) die(from);
    close(in);
    close(out);
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "info")) {
        load(argv[2]);
        printf("writes %zu flushes %zu\n", nwrites, nflushes);
        return 0;
    }
    if (argc != 7 || strcmp(argv[1], "build")) {
        fprintf(stderr, "usage: crashimages info LOG\n"
                        "       crashimages build BASE LOG CUT none|all|SEED OUT\n");
        return 2;
    }
    const char *base = argv[2], *subset = argv[5], *out = argv[6];
    load(argv[3]);
    size_t cut = strtoul(argv[4], NULL, 10);
    if (cut > nflushes) {
        fprintf(stderr, "crashimages: cut %zu, but only %zu flushes\n", cut, nflushes);
        return 2;
    }
    /* Writes before `durable` are in; those before `end` may be. */
    uint64_t durable = cut ? flushes[cut - 1].seq : 0;
    uint64_t end = cut < nflushes ? flushes[cut].seq : UINT64_MAX;
    int64_t deadline = cut < nflushes ? flushes[cut].t0 : INT64_MAX;
    int all = !strcmp(subset, "all"), none = !strcmp(subset, "none");
    uint64_t rng = strtoull(subset, NULL, 10);

    copy(base, out);
    int fd = open(out, O_WRONLY);
    if (fd < 0) die(out);
    size_t window = 0, applied = 0;
    for (size_t i = 0; i < nwrites && writes[i].seq < end; i++) {
        const struct write *w = &writes[i];
        if (w->seq > durable) {
            window++;
            if (none || (!all && (mix(rng += 0x632BE59BD9B4E019ull) & 1))) continue;
            applied++;
        }
        if (pwrite(fd, w->data, w->len, w->offset) != (ssize_t)w->len) die("pwrite");
    }
    close(fd);
    printf("deadline %" PRId64 " window %zu applied %zu\n", deadline, window, applied);
    return 0;
}
