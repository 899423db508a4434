// The few C pieces BentoServices needs: memfd calls Glibc's Swift module does
// not show (they need _GNU_SOURCE), and ordered stores into shared memory.
#ifndef CBENTOSERVICES_H
#define CBENTOSERVICES_H

#include <stdint.h>

/// memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING); -1 and errno on failure.
int bento_memfd_create(const char *name);

/// Forbids shrinking and growing the memfd, and further seals: a mapping of
/// it can then never fault past its end. 0, or -1 and errno.
int bento_memfd_seal(int fd);

/// 1 if `fd` is a memfd sealed against shrinking, 0 if not, -1 and errno if
/// the call fails (EINVAL: not a memfd).
int bento_memfd_is_sealed(int fd);

/// Takes a write lock on the whole file for fd's open file description (an
/// OFD lock, F_OFD_SETLK): it lasts while any fd of that description is open,
/// in whichever process (a dup passed to a child or systemd's fd store keeps
/// it). fd must be open for writing. 0, or -1 and errno (EAGAIN: another open
/// file description holds a lock on the file).
int bento_ofd_lock(int fd);
/// A shared (read) lock instead, for an image open read-only: it keeps
/// writers (bento-upgraded serving it writable, mkfs, fsck repairing) out.
int bento_ofd_lock_shared(int fd);

/// 1 if another open file description holds a lock on part of the file that
/// a whole-file write lock would conflict with (F_OFD_GETLK: nothing is
/// taken), 0 if not, -1 and errno.
int bento_ofd_is_locked(int fd);

/// A store no earlier load or store may pass, neither in the compiler nor
/// in the processor: what publishes data written before it.
static inline void bento_store_release(uint64_t *address, uint64_t value) {
    __atomic_store_n(address, value, __ATOMIC_RELEASE);
}

static inline uint64_t bento_load_acquire(const uint64_t *address) {
    return __atomic_load_n(address, __ATOMIC_ACQUIRE);
}

#endif
