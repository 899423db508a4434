// libfuse3's low-level API, at the 3.12 interface (fuse_session_loop_mt_312,
// fuse_loop_cfg_*), plus mount(2) for mounting /dev/fuse ourselves.
#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
