// A mixed, self-checking file workload for the upgrade tests: each thread
// creates, writes, fsyncs, reads back and checks, renames and unlinks files
// in its own directory, and keeps one file open the whole time, writing and
// checking it in place. Every failed system call and every wrong byte is
// counted; so is the longest single system call.
// With LOAD_XATTRS=1 in the environment (xv6fs 3.0.0) each thread also sets,
// reads back and removes extended attributes (inline and in blocks of their
// own) on its new files, and punches holes and zeroes ranges in a file of
// its own, preallocated, checking what reads back.
// Usage: load DIR THREADS SECONDS   (stops early when DIR/STOP exists)
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

static const char *root;
static int seconds, xattrs;
static atomic_long ops, failures, mismatches, slowest_ns;

static long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

// Runs one system call expression, timing it and counting a failure.
#define CALL(expr, what) ({ \
    long t0_ = now_ns(); long r_ = (long)(expr); long d_ = now_ns() - t0_; \
    long s_ = atomic_load(&slowest_ns); \
    while (d_ > s_ && !atomic_compare_exchange_weak(&slowest_ns, &s_, d_)) {} \
    atomic_fetch_add(&ops, 1); \
    if (r_ < 0) { atomic_fetch_add(&failures, 1); fprintf(stderr, "%s failed: %s\n", what, strerror(errno)); } \
    r_; })

static void fill(unsigned char *buf, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) { seed = seed * 1103515245u + 12345u; buf[i] = seed >> 16; }
}

// An attribute on the open file fd: set, read back, and every other time
// removed (then it must be gone).
static void xattr_round(int fd, unsigned k, long id) {
    unsigned char buf[3000], back[4096];
    size_t n = k % 2 ? 3000 : 1 + k % 200;  // large ones get blocks of their own
    fill(buf, n, k * 17u + (unsigned)id);
    char name[32];
    snprintf(name, sizeof name, "user.k%u", k % 3);
    CALL(fsetxattr(fd, name, buf, n, 0), "setxattr");
    if (CALL(fgetxattr(fd, name, back, sizeof back), "getxattr") != (long)n || memcmp(buf, back, n) != 0)
        atomic_fetch_add(&mismatches, 1);
    if (k % 2 == 0) {
        CALL(fremovexattr(fd, name), "removexattr");
        if (fgetxattr(fd, name, back, sizeof back) >= 0 || errno != ENODATA) atomic_fetch_add(&mismatches, 1);
    }
}

// 64 KiB of the preallocated file, written, then a hole punched and a range
// zeroed in it, read back: through the page cache, and with O_DIRECT
// (`direct`, an aligned buffer) from the file system itself, where the
// kernel's own zeroing of its cached pages cannot hide a wrong byte.
static void fallocate_round(int fd, int direct, unsigned k, long id, unsigned char *buf, unsigned char *back) {
    off_t at = (off_t)(k % 32) * 65536;
    fill(buf, 65536, k * 13u + (unsigned)id);
    CALL(fallocate(fd, 0, at, 65536), "fallocate");
    CALL(fallocate(fd, FALLOC_FL_KEEP_SIZE, 32 * 65536, 65536), "fallocate keep size");
    if (CALL(pwrite(fd, buf, 65536, at), "pwrite fallocated") != 65536) atomic_fetch_add(&mismatches, 1);
    CALL(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, at + 1000 + k % 4096, 20000), "punch hole");
    memset(buf + 1000 + k % 4096, 0, 20000);
    CALL(fallocate(fd, FALLOC_FL_ZERO_RANGE, at + 40000, 5000 + k % 4096), "zero range");
    memset(buf + 40000, 0, 5000 + k % 4096);
    if (CALL(pread(fd, back, 65536, at), "pread fallocated") != 65536 || memcmp(buf, back, 65536) != 0)
        atomic_fetch_add(&mismatches, 1);
    if (CALL(pread(direct, back, 65536, at), "pread fallocated O_DIRECT") != 65536 || memcmp(buf, back, 65536) != 0)
        atomic_fetch_add(&mismatches, 1);
    struct stat st;
    if (CALL(fstat(fd, &st), "fstat") == 0 && st.st_size > 32 * 65536) atomic_fetch_add(&mismatches, 1);
}

static void *worker(void *arg) {
    long id = (long)arg;
    char dir[4096], path[4200], other[4200], stop[4200];
    snprintf(dir, sizeof dir, "%s/t%ld", root, id);
    snprintf(stop, sizeof stop, "%s/STOP", root);
    CALL(mkdir(dir, 0755), "mkdir");
    snprintf(path, sizeof path, "%s/held", dir);
    int held = CALL(open(path, O_CREAT | O_RDWR, 0644), "open held");
    snprintf(path, sizeof path, "%s/fallocated", dir);
    int fa = xattrs ? CALL(open(path, O_CREAT | O_RDWR, 0644), "open fallocated") : -1;
    int fad = xattrs ? CALL(open(path, O_RDONLY | O_DIRECT), "open fallocated O_DIRECT") : -1;
    unsigned char *buf = malloc(1 << 17), *back = NULL;
    if (posix_memalign((void **)&back, 4096, 1 << 17) != 0) back = NULL;
    long deadline = now_ns() + (long)seconds * 1000000000L;
    for (unsigned k = 0; now_ns() < deadline && access(stop, F_OK) != 0; k++) {
        // A new file: written, sometimes fsynced, read back and checked.
        size_t n = 1 + (k * 7919u + id * 104729u) % 65536;
        fill(buf, n, k ^ (unsigned)id);
        snprintf(path, sizeof path, "%s/f%u", dir, k);
        int fd = CALL(open(path, O_CREAT | O_EXCL | O_RDWR, 0644), "create");
        if (fd >= 0) {
            if (CALL(write(fd, buf, n), "write") != (long)n) atomic_fetch_add(&mismatches, 1);
            if (k % 4 == 0) CALL(fsync(fd), "fsync");
            if (xattrs) xattr_round(fd, k, id);
            CALL(close(fd), "close");
        }
        fd = CALL(open(path, O_RDONLY), "open");
        if (fd >= 0) {
            long got = CALL(read(fd, back, 1 << 17), "read");
            if (got != (long)n || memcmp(buf, back, n) != 0) atomic_fetch_add(&mismatches, 1);
            CALL(close(fd), "close");
        }
        // Renamed, and files from a while ago removed.
        snprintf(other, sizeof other, "%s/g%u", dir, k);
        CALL(rename(path, other), "rename");
        if (k >= 16) {
            snprintf(other, sizeof other, "%s/g%u", dir, k - 16);
            CALL(unlink(other), "unlink");
        }
        // The held file, written and checked in place.
        off_t at = (off_t)(k % 256) * 4096;
        fill(buf, 4096, k * 31u + (unsigned)id);
        if (CALL(pwrite(held, buf, 4096, at), "pwrite held") != 4096) atomic_fetch_add(&mismatches, 1);
        if (CALL(pread(held, back, 4096, at), "pread held") != 4096 || memcmp(buf, back, 4096) != 0)
            atomic_fetch_add(&mismatches, 1);
        if (fa >= 0) fallocate_round(fa, fad, k, id, buf, back);
    }
    if (fa >= 0) CALL(close(fa), "close fallocated");
    if (fad >= 0) CALL(close(fad), "close fallocated O_DIRECT");
    CALL(fsync(held), "fsync held");
    CALL(close(held), "close held");
    free(buf); free(back);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: %s DIR THREADS SECONDS\n", argv[0]); return 2; }
    root = argv[1];
    int threads = atoi(argv[2]);
    seconds = atoi(argv[3]);
    xattrs = getenv("LOAD_XATTRS") && !strcmp(getenv("LOAD_XATTRS"), "1");
    pthread_t t[64];
    for (long i = 0; i < threads && i < 64; i++) pthread_create(&t[i], NULL, worker, (void *)i);
    for (long i = 0; i < threads && i < 64; i++) pthread_join(t[i], NULL);
    printf("ops=%ld failures=%ld mismatches=%ld slowest_us=%ld\n", atomic_load(&ops), atomic_load(&failures),
           atomic_load(&mismatches), atomic_load(&slowest_ns) / 1000);
    return atomic_load(&failures) || atomic_load(&mismatches) ? 1 : 0;
}
