/*
 * workload: appends and atomic replaces on a mounted file system, logging
 * what each returned fsync made durable.
 *
 *   workload DIR MODEL_DIR OPLOG SEED [OPS [PAUSE_MS [features]]]
 *
 * One thread per file, OPS operations each (default 40), with a random
 * pause of up to PAUSE_MS (default 0) after each: a run longer than 5 s
 * also sees the daemon's own periodic commits. Append files a0..a3 grow
 * by random appends (1 byte to 64 KiB), through an O_APPEND descriptor
 * kept open, a fresh O_APPEND open, or a fresh open and pwrite at the end;
 * after some appends (after all, for a0) an fsync or fdatasync. Replaced
 * files r0, r1 get versions 1 to OPS through "write r0.tmp, fsync, rename
 * over r0, fsync DIR".
 *
 * Every byte is a function of the seed, the file and the offset (and the
 * version), so any run with the same seed writes the same files. After
 * each returned fsync (for a replace: the directory fsync) one line goes
 * to OPLOG: "<CLOCK_MONOTONIC ns after the return> <file> <durable length
 * or version>". MODEL_DIR gets the final content of each append file
 * (MODEL_DIR/a0) and every version of each replaced file (MODEL_DIR/r0.1,
 * r0.2, ...), written beside the real ones as the threads go. Exit status
 * 0 when every call succeeded.
 *
 * With "features" (xv6fs 3.0.0), one more thread runs OPS/10 rounds of
 * extended attributes, fallocate, punch hole, zero range and writes in the
 * triple-indirect range (v3ops.h), fsyncing after each step.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "v3ops.h"

enum { APPENDERS = 4, REPLACERS = 2, FILES = APPENDERS + REPLACERS, MAX_SIZE = 65536 };

static const char *dir, *model;
static uint64_t seed;
static int ops = 40, pause_ms;
static int oplog = -1, dirfd_ = -1;
static pthread_mutex_t oplog_lock = PTHREAD_MUTEX_INITIALIZER;
static int failures;

static uint64_t mix(uint64_t x) {  /* splitmix64's finalizer */
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* A thread's own random numbers, reproducible from the seed. */
static uint64_t next(uint64_t *state) { return mix(*state += 0x632BE59BD9B4E019ull); }

/* Byte `offset` of file `file`, version `version` (0 for append files). */
static void fill(unsigned char *buf, int file, uint64_t version, uint64_t offset, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint64_t o = offset + i;
        buf[i] = mix(seed ^ mix(((uint64_t)file << 56) ^ (version << 40) ^ (o >> 3))) >> (8 * (o & 7));
    }
}

/* A random size, often small so that many appends share a block. */
static size_t random_size(uint64_t *rng) {
    uint64_t r = next(rng);
    return 1 + (r & 1 ? (r >> 8) % 512 : (r >> 8) % MAX_SIZE);
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void fail(const char *what, const char *name) {
    fprintf(stderr, "workload: %s %s: %s\n", what, name, strerror(errno));
    __atomic_add_fetch(&failures, 1, __ATOMIC_SEQ_CST);
}

/* Logs what a returned fsync made durable; the time is taken after it. */
static void durable(const char *name, uint64_t value) {
    char line[128];
    int n = snprintf(line, sizeof line, "%" PRId64 " %s %" PRIu64 "\n", now_ns(), name, value);
    pthread_mutex_lock(&oplog_lock);
    if (write(oplog, line, n) != n) fail("write", "oplog");
    pthread_mutex_unlock(&oplog_lock);
}

static int write_all(int fd, const unsigned char *buf, size_t n, off_t at) {
    while (n > 0) {
        ssize_t w = at < 0 ? write(fd, buf, n) : pwrite(fd, buf, n, at);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        buf += w, n -= w;
        if (at >= 0) at += w;
    }
    return 0;
}

static void pause_a_while(uint64_t *rng) {
    if (pause_ms > 0) usleep(next(rng) % (pause_ms * 1000 + 1));
}

static int sync_fd(int fd, uint64_t *rng) { return next(rng) & 1 ? fsync(fd) : fdatasync(fd); }

/* MODEL_DIR/name, for writing. */
static int open_model(const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", model, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) fail("create", path);
    return fd;
}

static void *appender(void *arg) {
    int file = (int)(intptr_t)arg;
    char name[16];
    snprintf(name, sizeof name, "a%d", file);
    uint64_t rng = mix(seed + file), length = 0;
    unsigned char *buf = malloc(MAX_SIZE);
    int model_fd = open_model(name);
    /* Created and made durable, name included, before the first append. */
    int fd = openat(dirfd_, name, O_WRONLY | O_CREAT | O_APPEND, 0644), appending = 1;
    if (fd < 0 || fsync(fd) != 0 || fsync(dirfd_) != 0) { fail("create", name); return NULL; }
    durable(name, 0);
    for (int i = 0; i < ops; i++) {
        size_t n = random_size(&rng);
        fill(buf, file, 0, length, n);
        /* 0: the descriptor kept open, 1: a fresh O_APPEND one, 2: a fresh
         * plain one, written at the end with pwrite (also when kept). */
        int how = next(&rng) % 3;
        if (how > 0 || fd < 0) {
            if (fd >= 0) close(fd);
            appending = how != 2;
            fd = openat(dirfd_, name, appending ? O_WRONLY | O_APPEND : O_WRONLY);
            if (fd < 0) { fail("open", name); break; }
        }
        if (write_all(fd, buf, n, appending ? -1 : (off_t)length) != 0) { fail("write", name); break; }
        if (write_all(model_fd, buf, n, -1) != 0) { fail("write", "model"); break; }
        length += n;
        if (file == 0 || next(&rng) % 2 == 0) {
            if (sync_fd(fd, &rng) != 0) { fail("fsync", name); break; }
            durable(name, length);
        }
        if (next(&rng) % 4 == 0) { close(fd); fd = -1; }
        pause_a_while(&rng);
    }
    if (fd >= 0) close(fd);
    close(model_fd);
    free(buf);
    return NULL;
}

static void *replacer(void *arg) {
    int file = (int)(intptr_t)arg;
    char name[16], tmp[24];
    snprintf(name, sizeof name, "r%d", file - APPENDERS);
    snprintf(tmp, sizeof tmp, "%s.tmp", name);
    uint64_t rng = mix(seed + file);
    unsigned char *buf = malloc(MAX_SIZE);
    for (int version = 1; version <= ops; version++) {
        size_t n = random_size(&rng);
        fill(buf, file, version, 0, n);
        char version_name[32];
        snprintf(version_name, sizeof version_name, "%s.%d", name, version);
        int model_fd = open_model(version_name);
        if (write_all(model_fd, buf, n, -1) != 0) { fail("write", "model"); break; }
        close(model_fd);
        int fd = openat(dirfd_, tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) { fail("create", tmp); break; }
        if (write_all(fd, buf, n, -1) != 0 || sync_fd(fd, &rng) != 0) { fail("write+fsync", tmp); break; }
        close(fd);
        if (renameat(dirfd_, tmp, dirfd_, name) != 0) { fail("rename", tmp); break; }
        if (fsync(dirfd_) != 0) { fail("fsync of the directory for", name); break; }
        durable(name, version);
        pause_a_while(&rng);
    }
    free(buf);
    return NULL;
}

/* The xv6fs 3.0.0 steps of v3ops.h, each made durable by an fsync of
 * its file before it is logged. */
static void *featurer(void *arg) {
    (void)arg;
    uint64_t rng = mix(seed + 99);
    unsigned char *buf = malloc(1 << 16);
    for (int round = 0; round < ops / 10 || round == 0; round++) {
        char x[16], y[16];
        snprintf(x, sizeof x, "x%d", round);
        snprintf(y, sizeof y, "y%d", round);
        int fd = openat(dirfd_, x, O_RDWR | O_CREAT | O_EXCL, 0644);
        if (fd < 0) { fail("create", x); break; }
        for (int step = 1; step <= X_STEPS; step++) {
            int r = 0;
            switch (step) {
            case 1:
                for (int o = 0; o < 64 << 10; o++) buf[o] = feature_byte(round, o);
                r = write_all(fd, buf, 64 << 10, 0);
                break;
            case 2: case 3: case 9:
                xattr_value(round, step == 2 ? 0 : step == 3 ? 1 : 2, buf);
                r = fsetxattr(fd, step == 2 ? "user.small" : "user.large", buf,
                              xattr_len(round, step == 2 ? 0 : step == 3 ? 1 : 2), 0);
                break;
            case 4: r = fallocate(fd, 0, 64 << 10, 64 << 10); break;
            case 5: r = fallocate(fd, FALLOC_FL_KEEP_SIZE, 128 << 10, 128 << 10); break;
            case 6: r = fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4196, 20000 - 4196); break;
            case 7: r = fallocate(fd, FALLOC_FL_ZERO_RANGE, 30000, 10000); break;
            case 8: r = fremovexattr(fd, "user.small"); break;
            }
            if (r != 0) { fail("step of", x); break; }
            /* fdatasync need not make an attribute durable: fsync for those. */
            int xattr_step = step == 2 || step == 3 || step == 8 || step == 9;
            if ((xattr_step ? fsync(fd) : sync_fd(fd, &rng)) != 0 || (step == 1 && fsync(dirfd_) != 0)) {
                fail("fsync", x);
                break;
            }
            durable(x, step);
            pause_a_while(&rng);
        }
        close(fd);
        fd = openat(dirfd_, y, O_RDWR | O_CREAT | O_EXCL, 0644);
        if (fd < 0) { fail("create", y); break; }
        for (int step = 1; step <= Y_STEPS; step++) {
            uint64_t at = y_offset(round, step);
            for (int i = 0; i < Y_LEN; i++) buf[i] = feature_byte(100 + round, at + i);
            if (write_all(fd, buf, Y_LEN, (off_t)at) != 0) { fail("far write", y); break; }
            if (sync_fd(fd, &rng) != 0 || (step == 1 && fsync(dirfd_) != 0)) { fail("fsync", y); break; }
            durable(y, step);
            pause_a_while(&rng);
        }
        close(fd);
    }
    free(buf);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: workload DIR MODEL_DIR OPLOG SEED [OPS [PAUSE_MS]]\n");
        return 2;
    }
    dir = argv[1], model = argv[2], seed = strtoull(argv[4], NULL, 0);
    if (argc > 5) ops = atoi(argv[5]);
    if (argc > 6) pause_ms = atoi(argv[6]);
    int features = argc > 7 && !strcmp(argv[7], "features");
    oplog = open(argv[3], O_WRONLY | O_CREAT | O_APPEND | O_TRUNC, 0644);
    dirfd_ = open(dir, O_RDONLY | O_DIRECTORY);
    if (oplog < 0 || dirfd_ < 0) { perror("workload: open"); return 2; }
    printf("workload seed %" PRIu64 ", %d operations per file\n", seed, ops);
    fflush(stdout);
    pthread_t threads[FILES + 1];
    for (int i = 0; i < FILES; i++)
        pthread_create(&threads[i], NULL, i < APPENDERS ? appender : replacer, (void *)(intptr_t)i);
    if (features) pthread_create(&threads[FILES], NULL, featurer, NULL);
    for (int i = 0; i < FILES + features; i++) pthread_join(threads[i], NULL);
    return failures ? 1 : 0;
}
