#define _GNU_SOURCE
#include "CBentoFlusher.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

// FUSE_NOTIFY_INVAL_INODE: a fuse_out_header whose error field holds the
// notification code, then the inode, an offset (0: from the start, so its
// pages are written back and dropped) and a length (0: to the end).
struct notification {
    uint32_t length;
    int32_t code;
    uint64_t unique;
    uint64_t inode;
    int64_t offset;
    int64_t size;
};
enum { notify_inval_inode = 2 };

// A request is a sequence number and inodes to flush, answered with the
// sequence number; or 0 and a whole notification to write, not answered.
static void serve(int sock, int fuse_fd) {
    uint64_t request[1 + BENTO_NOTIFICATION_MAX / 8];
    for (;;) {
        ssize_t n = recv(sock, request, sizeof request, 0);
        if (n <= 0) _exit(0);  // the worker is gone
        if (request[0] == 0) {
            (void)!write(fuse_fd, &request[1], (size_t)n - 8);  // ENOENT: the kernel has nothing of it
            continue;
        }
        for (ssize_t i = 1; i < n / 8; i++) {
            struct notification note = { sizeof note, notify_inval_inode, 0, request[i], 0, 0 };
            (void)!write(fuse_fd, &note, sizeof note);  // ENOENT: the kernel forgot the inode
        }
        if (send(sock, &request[0], 8, MSG_NOSIGNAL) != 8) _exit(0);
    }
}

int bento_flusher_start(struct bento_flusher *flusher, int fuse_fd) {
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) return -errno;
    // The child's two descriptors, above any it will close.
    int sock = fcntl(pair[1], F_DUPFD_CLOEXEC, 64), fuse = fcntl(fuse_fd, F_DUPFD_CLOEXEC, 64);
    pid_t parent = getpid();
    pid_t pid = (sock < 0 || fuse < 0) ? -1 : fork();
    if (pid == 0) {
        // Only async-signal-safe calls: the worker has threads.
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        if (getppid() != parent) _exit(0);
        if (dup2(sock, 3) < 0 || dup2(fuse, 4) < 0) _exit(1);
        close_range(5, ~0U, 0);  // nothing of the worker's: the supervisor watches them close
        serve(3, 4);
    }
    int error = errno;
    close(pair[1]);
    if (sock >= 0) close(sock);
    if (fuse >= 0) close(fuse);
    if (pid < 0) { close(pair[0]); return -error; }
    flusher->socket = pair[0];
    flusher->child = pid;
    flusher->sequence = 0;
    pthread_mutex_init(&flusher->lock, NULL);
    return 0;
}

int bento_flusher_notify(struct bento_flusher *flusher, const void *notification, size_t length) {
    if (length > BENTO_NOTIFICATION_MAX) return -EINVAL;
    uint64_t request[1 + BENTO_NOTIFICATION_MAX / 8];
    request[0] = 0;
    memcpy(&request[1], notification, length);
    return send(flusher->socket, request, 8 + length, MSG_NOSIGNAL) < 0 ? -errno : 0;
}

static int64_t remaining_ms(const struct timespec *deadline) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (deadline->tv_sec - now.tv_sec) * 1000 + (deadline->tv_nsec - now.tv_nsec) / 1000000;
}

int bento_flusher_flush(struct bento_flusher *flusher, const uint64_t *inodes, int count, int timeout_ms) {
    if (count < 0 || count > BENTO_FLUSH_BATCH) return -EINVAL;
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) { deadline.tv_sec++; deadline.tv_nsec -= 1000000000; }
    int rc = pthread_mutex_timedlock(&flusher->lock, &deadline);
    if (rc != 0) return -rc;
    uint64_t request[1 + BENTO_FLUSH_BATCH];
    uint64_t sequence = ++flusher->sequence;
    request[0] = sequence;
    memcpy(&request[1], inodes, (size_t)count * 8);
    rc = 0;
    if (send(flusher->socket, request, (size_t)(count + 1) * 8, MSG_NOSIGNAL) < 0) rc = -errno;
    // Answers to earlier requests that timed out may come first: skipped.
    while (rc == 0) {
        int64_t left = remaining_ms(&deadline);
        struct pollfd p = { flusher->socket, POLLIN, 0 };
        int ready = left > 0 ? poll(&p, 1, (int)left) : 0;
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) { rc = ready == 0 ? -ETIMEDOUT : -errno; break; }
        uint64_t answer;
        ssize_t n = recv(flusher->socket, &answer, 8, 0);
        if (n != 8) { rc = n == 0 ? -EPIPE : -errno; break; }
        if (answer == sequence) break;
    }
    pthread_mutex_unlock(&flusher->lock);
    return rc;
}
