// Has the kernel write a mount's dirty pages back, from a child process.
// syncfs(2) on the mount waits, unkillably, until the WRITEs it sends are
// answered. A worker thread waiting there when the worker dies would keep
// it from ever exiting: those WRITEs are answered only by the next worker,
// which is started once this one is gone. So the child waits, and the
// worker waits for the child with a deadline.
#ifndef CBENTOFLUSHER_H
#define CBENTOFLUSHER_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

struct bento_flusher {
    int socket;             // to the child (SOCK_SEQPACKET)
    pid_t child;
    uint64_t sequence;      // of the last request sent
    pthread_mutex_t lock;   // one request at a time
};

/// Starts the child, which syncs the file system mounted at `mountpoint`
/// (opened for each request: an open descriptor would keep the mount busy).
/// 0 or -errno.
int bento_flusher_start(struct bento_flusher *flusher, const char *mountpoint);

/// Has the child write the mount's dirty pages back and waits until it is
/// done, at most `timeout_ms` (waiting for an earlier request included).
/// 0, or -ETIMEDOUT, or the child's -errno.
int bento_flusher_sync(struct bento_flusher *flusher, int timeout_ms);

#endif
