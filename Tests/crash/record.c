/*
 * record.so: an LD_PRELOAD shim that records every write to a disk image
 * and every flush of it, so that crashimages can later rebuild what the
 * image could hold after a power loss at any moment.
 *
 *   BENTO_RECORD_IMAGE=IMAGE BENTO_RECORD_LOG=LOG LD_PRELOAD=record.so cmd...
 *
 * The real system call is always made. A write is recorded after it returns
 * (only what it wrote); a flush is recorded after it returns, with its
 * sequence number and time taken before it started, because only writes
 * that returned before a flush started are covered by it.
 *
 * What bento-upgraded does to an image (strace -f): pwrite64 of 4096-byte
 * blocks and fdatasync, nothing else. The other calls are caught too in
 * case that changes. sync_file_range is recorded but is no durability
 * barrier (it neither flushes metadata nor the device cache). mmap of the
 * image is not handled (the daemon does not map it).
 *
 * Log format (host byte order): a sequence of struct rec, each followed by
 * `len` bytes of data for a WRITE.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "record.h"

static int log_fd = -1;
static dev_t image_dev;
static ino_t image_ino;
static uint64_t next_seq = 1;
/* BENTO_RECORD_DROP_FLUSH=N leaves every Nth flush out of the log, as if the
 * daemon had not made it: only for showing that the checks can fail. */
static long drop_every, flushes_seen;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off64_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static ssize_t (*real_pwritev64)(int, const struct iovec *, int, off64_t);
static ssize_t (*real_pwritev2)(int, const struct iovec *, int, off_t, int);
static ssize_t (*real_pwritev64v2)(int, const struct iovec *, int, off64_t, int);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_syncfs)(int);
static void (*real_sync)(void);
static int (*real_sync_file_range)(int, off64_t, off64_t, unsigned int);

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

__attribute__((constructor)) static void init(void) {
    real_write = dlsym(RTLD_NEXT, "write");
    real_pwrite = dlsym(RTLD_NEXT, "pwrite");
    real_pwrite64 = dlsym(RTLD_NEXT, "pwrite64");
    real_writev = dlsym(RTLD_NEXT, "writev");
    real_pwritev = dlsym(RTLD_NEXT, "pwritev");
    real_pwritev64 = dlsym(RTLD_NEXT, "pwritev64");
    real_pwritev2 = dlsym(RTLD_NEXT, "pwritev2");
    real_pwritev64v2 = dlsym(RTLD_NEXT, "pwritev64v2");
    real_fsync = dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
    real_syncfs = dlsym(RTLD_NEXT, "syncfs");
    real_sync = dlsym(RTLD_NEXT, "sync");
    real_sync_file_range = dlsym(RTLD_NEXT, "sync_file_range");

    const char *image = getenv("BENTO_RECORD_IMAGE"), *path = getenv("BENTO_RECORD_LOG");
    struct stat st;
    if (!image || !path || stat(image, &st) != 0) return;  /* not recording */
    image_dev = st.st_dev;
    image_ino = st.st_ino;
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return;
    /* Out of the way of a daemon that closes or reuses low descriptors. */
    log_fd = fcntl(fd, F_DUPFD_CLOEXEC, 900);
    close(fd);
    if (log_fd < 0) return;
    const char *drop = getenv("BENTO_RECORD_DROP_FLUSH");
    drop_every = drop ? atol(drop) : 0;
    /* The daemon's worker processes inherit LD_PRELOAD and record too: the
     * image is written by one worker at a time, so each process's sequence
     * numbers, in the order of the log (O_APPEND), are the order of writes. */
}

/* Whether fd is the image (same_fs: or any file on the image's file system,
 * for syncfs). fstat each time: descriptors get closed, dup'ed and reused. */
static int is_image(int fd, int same_fs) {
    struct stat st;
    if (log_fd < 0 || fd == log_fd || fstat(fd, &st) != 0) return 0;
    return st.st_dev == image_dev && (same_fs || st.st_ino == image_ino);
}

/* Appends one record with the lock held: one writev per record, retried
 * until whole, straight to the fd so a killed process leaves a whole log. */
static void append(struct rec *r, const struct iovec *data, int ndata) {
    struct iovec iov[1 + 64];
    int n = 0;
    iov[n++] = (struct iovec){ r, sizeof *r };
    for (int i = 0; i < ndata && n < 65; i++) iov[n++] = data[i];
    struct iovec *p = iov;
    while (n > 0) {
        ssize_t w = syscall(SYS_writev, log_fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            abort();  /* a log with a hole would make every check meaningless */
        }
        while (n > 0 && (size_t)w >= p->iov_len) { w -= p->iov_len; p++; n--; }
        if (n > 0) { p->iov_base = (char *)p->iov_base + w; p->iov_len -= w; }
    }
}

/* Records a write of `done` bytes (from iov) at offset; offset -1: at the
 * file position, which the write has moved past what it wrote. */
static void record_write(int fd, const struct iovec *iov, int iovcnt, off_t offset, ssize_t done) {
    if (done <= 0 || !is_image(fd, 0)) return;
    int saved = errno;
    if (offset == -1) offset = lseek(fd, 0, SEEK_CUR) - done;
    struct iovec part[64];
    int n = 0;
    size_t left = done;
    for (int i = 0; i < iovcnt && left > 0 && n < 64; i++) {
        size_t take = iov[i].iov_len < left ? iov[i].iov_len : left;
        part[n++] = (struct iovec){ iov[i].iov_base, take };
        left -= take;
    }
    if (left > 0) abort();  /* more than 64 pieces: not worth supporting */
    pthread_mutex_lock(&lock);
    struct rec r = { REC_MAGIC, REC_WRITE, next_seq++, (uint64_t)offset, (uint64_t)done, now_ns(), 0, 0 };
    append(&r, part, n);
    pthread_mutex_unlock(&lock);
    errno = saved;
}

/* A flush: take its place in the sequence before it starts; record it,
 * with its result, once it returns. */
#define FLUSH(type, call)                                             \
    do {                                                              \
        pthread_mutex_lock(&lock);                                    \
        if (type == REC_FLUSH && drop_every > 0 && ++flushes_seen % drop_every == 0) { \
            pthread_mutex_unlock(&lock);                              \
            result = call;                                            \
            break;                                                    \
        }                                                             \
        struct rec r = { REC_MAGIC, type, next_seq++, 0, 0, now_ns(), 0, 0 }; \
        pthread_mutex_unlock(&lock);                                  \
        result = call;                                                \
        int saved = errno;                                            \
        pthread_mutex_lock(&lock);                                    \
        r.t1 = now_ns();                                              \
        r.result = result < 0 ? -saved : result;                      \
        append(&r, NULL, 0);                                          \
        pthread_mutex_unlock(&lock);                                  \
        errno = saved;                                                \
    } while (0)

ssize_t write(int fd, const void *buf, size_t count) {
    ssize_t done = real_write(fd, buf, count);
    struct iovec iov = { (void *)buf, count };
    record_write(fd, &iov, 1, -1, done);
    return done;
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt) {
    ssize_t done = real_writev(fd, iov, iovcnt);
    record_write(fd, iov, iovcnt, -1, done);
    return done;
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
    ssize_t done = real_pwrite(fd, buf, count, offset);
    struct iovec iov = { (void *)buf, count };
    record_write(fd, &iov, 1, offset, done);
    return done;
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off64_t offset) {
    ssize_t done = real_pwrite64(fd, buf, count, offset);
    struct iovec iov = { (void *)buf, count };
    record_write(fd, &iov, 1, offset, done);
    return done;
}

ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t offset) {
    ssize_t done = real_pwritev(fd, iov, iovcnt, offset);
    record_write(fd, iov, iovcnt, offset, done);
    return done;
}

ssize_t pwritev64(int fd, const struct iovec *iov, int iovcnt, off64_t offset) {
    ssize_t done = real_pwritev64(fd, iov, iovcnt, offset);
    record_write(fd, iov, iovcnt, offset, done);
    return done;
}

/* offset -1 means "at the file position", as for writev. */
ssize_t pwritev2(int fd, const struct iovec *iov, int iovcnt, off_t offset, int flags) {
    ssize_t done = real_pwritev2(fd, iov, iovcnt, offset, flags);
    record_write(fd, iov, iovcnt, offset, done);
    return done;
}

ssize_t pwritev64v2(int fd, const struct iovec *iov, int iovcnt, off64_t offset, int flags) {
    ssize_t done = real_pwritev64v2(fd, iov, iovcnt, offset, flags);
    record_write(fd, iov, iovcnt, offset, done);
    return done;
}

int fsync(int fd) {
    int result;
    if (!is_image(fd, 0)) return real_fsync(fd);
    FLUSH(REC_FLUSH, real_fsync(fd));
    return result;
}

int fdatasync(int fd) {
    int result;
    if (!is_image(fd, 0)) return real_fdatasync(fd);
    FLUSH(REC_FLUSH, real_fdatasync(fd));
    return result;
}

int syncfs(int fd) {
    int result;
    if (!is_image(fd, 1)) return real_syncfs(fd);
    FLUSH(REC_FLUSH, real_syncfs(fd));
    return result;
}

void sync(void) {
    int result;
    if (log_fd < 0) { real_sync(); return; }
    FLUSH(REC_FLUSH, (real_sync(), 0));
    (void)result;
}

int sync_file_range(int fd, off64_t offset, off64_t nbytes, unsigned int flags) {
    int result;
    if (!is_image(fd, 0)) return real_sync_file_range(fd, offset, nbytes, flags);
    FLUSH(REC_RANGE, real_sync_file_range(fd, offset, nbytes, flags));
    return result;
}
