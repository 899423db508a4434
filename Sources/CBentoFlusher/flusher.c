#define _GNU_SOURCE
#include "CBentoFlusher.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

// Each request is a sequence number; the answer repeats it with an errno.
struct answer { uint64_t sequence; int64_t error; };

static void serve(int sock, const char *mountpoint) {
    for (;;) {
        uint64_t sequence;
        if (recv(sock, &sequence, sizeof sequence, 0) != sizeof sequence) _exit(0);  // the worker is gone
        struct answer answer = { sequence, 0 };
        int fd = open(mountpoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || syncfs(fd) != 0) answer.error = errno;
        if (fd >= 0) close(fd);
        if (send(sock, &answer, sizeof answer, MSG_NOSIGNAL) != sizeof answer) _exit(0);
    }
}

int bento_flusher_start(struct bento_flusher *flusher, const char *mountpoint) {
    char path[PATH_MAX];
    if (strlen(mountpoint) >= sizeof path) return -ENAMETOOLONG;
    strcpy(path, mountpoint);  // the child may not allocate
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) return -errno;
    int sock = fcntl(pair[1], F_DUPFD_CLOEXEC, 64);  // above what the child closes
    pid_t parent = getpid();
    pid_t pid = sock < 0 ? -1 : fork();
    if (pid == 0) {
        // Only async-signal-safe calls: the worker has threads.
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        if (getppid() != parent) _exit(0);
        if (dup2(sock, 3) < 0) _exit(1);
        close_range(4, ~0U, 0);  // nothing of the worker's: the supervisor watches them close
        serve(3, path);
    }
    int error = errno;
    close(pair[1]);
    if (sock >= 0) close(sock);
    if (pid < 0) { close(pair[0]); return -error; }
    flusher->socket = pair[0];
    flusher->child = pid;
    flusher->sequence = 0;
    pthread_mutex_init(&flusher->lock, NULL);
    return 0;
}

static int64_t remaining_ms(const struct timespec *deadline) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (deadline->tv_sec - now.tv_sec) * 1000 + (deadline->tv_nsec - now.tv_nsec) / 1000000;
}

int bento_flusher_sync(struct bento_flusher *flusher, int timeout_ms) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) { deadline.tv_sec++; deadline.tv_nsec -= 1000000000; }
    int rc = pthread_mutex_timedlock(&flusher->lock, &deadline);
    if (rc != 0) return -rc;
    uint64_t sequence = ++flusher->sequence;
    rc = send(flusher->socket, &sequence, sizeof sequence, MSG_NOSIGNAL) == sizeof sequence ? 0 : -errno;
    // Answers to earlier requests that timed out may come first: skipped.
    while (rc == 0) {
        int64_t left = remaining_ms(&deadline);
        struct pollfd p = { flusher->socket, POLLIN, 0 };
        int ready = left > 0 ? poll(&p, 1, (int)left) : 0;
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) { rc = ready == 0 ? -ETIMEDOUT : -errno; break; }
        struct answer answer;
        ssize_t n = recv(flusher->socket, &answer, sizeof answer, 0);
        if (n != sizeof answer) { rc = n == 0 ? -EPIPE : -errno; break; }
        if (answer.sequence == sequence) { rc = (int)-answer.error; break; }
    }
    pthread_mutex_unlock(&flusher->lock);
    return rc;
}
