#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/mman.h>
#include "CBentoServices.h"

int bento_memfd_create(const char *name) {
    return memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
}

int bento_memfd_seal(int fd) {
    return fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
}

int bento_memfd_is_sealed(int fd) {
    int seals = fcntl(fd, F_GET_SEALS);
    if (seals < 0) return -1;
    return (seals & F_SEAL_SHRINK) != 0;
}

static struct flock whole_file_write_lock(void) {
    struct flock lock = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0, .l_pid = 0 };
    return lock;
}

int bento_ofd_lock(int fd) {
    struct flock lock = whole_file_write_lock();
    return fcntl(fd, F_OFD_SETLK, &lock);
}

int bento_ofd_lock_shared(int fd) {
    struct flock lock = whole_file_write_lock();
    lock.l_type = F_RDLCK;
    return fcntl(fd, F_OFD_SETLK, &lock);
}

int bento_ofd_is_locked(int fd) {
    struct flock lock = whole_file_write_lock();
    if (fcntl(fd, F_OFD_GETLK, &lock) < 0) return -1;
    return lock.l_type != F_UNLCK;
}
