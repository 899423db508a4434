// Has the kernel write files' dirty pages back, and drop what it cached,
// from a child process.
// FUSE_NOTIFY_INVAL_INODE with an offset writes an inode's dirty pages back
// inside the write(2) that sends it, and waits, unkillably, until the
// WRITEs are answered. (syncfs(2) was tried: on Linux 6.18 it returned
// before all of FUSE's WRITEs were answered.) A worker thread waiting there when the worker dies
// would keep it from ever exiting: those WRITEs are answered only by the
// next worker, which is started once this one is gone. So the child waits,
// and the worker waits for the child with a deadline. So do other
// notifications that can wait on a request: FUSE_NOTIFY_INVAL_ENTRY takes
// the directory's lock, which the kernel holds for a request in it until it
// is answered.
#ifndef CBENTOFLUSHER_H
#define CBENTOFLUSHER_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

/// Inodes one request may name.
#define BENTO_FLUSH_BATCH 64
/// The longest notification the child passes on (an INVAL_ENTRY with a
/// 255-byte name is 288 bytes).
#define BENTO_NOTIFICATION_MAX 512

struct bento_flusher {
    int socket;             // to the child (SOCK_SEQPACKET)
    pid_t child;
    uint64_t sequence;      // of the last request sent
    pthread_mutex_t lock;   // one request at a time
};

/// Starts the child, which writes notifications to `fuse_fd`. 0 or -errno.
int bento_flusher_start(struct bento_flusher *flusher, int fuse_fd);

/// Has the child write back the dirty pages of `count` inodes (at most
/// BENTO_FLUSH_BATCH) and waits until it is done, at most `timeout_ms`
/// (waiting for an earlier request included). 0, or -ETIMEDOUT, or -errno.
int bento_flusher_flush(struct bento_flusher *flusher, const uint64_t *inodes, int count, int timeout_ms);

/// Has the child write one whole FUSE notification (header included) to
/// the fuse fd, in order after earlier requests; does not wait for it.
/// 0 or -errno.
int bento_flusher_notify(struct bento_flusher *flusher, const void *notification, size_t length);

#endif
