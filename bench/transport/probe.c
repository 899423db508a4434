/*
 * FUSE transport probe: a tiny in-memory FUSE file system served over raw
 * /dev/fuse, with no libfuse, through one of two transports:
 *
 *   -t classic  threads doing read(/dev/fuse) / writev(/dev/fuse)
 *   -t uring    FUSE over io_uring (kernel 6.14+, fuse.enable_uring=Y):
 *               INIT replied with FUSE_OVER_IO_URING, one io_uring per
 *               possible CPU (queue q), D entries per queue registered with
 *               IORING_OP_URING_CMD / FUSE_IO_URING_CMD_REGISTER, requests
 *               answered with FUSE_IO_URING_CMD_COMMIT_AND_FETCH; one thread
 *               per queue waits on its ring (pinned to CPU q when CPU q is
 *               in the process's affinity mask). One classic reader thread
 *               stays up: INIT, FORGET and INTERRUPT still come through
 *               read(/dev/fuse).
 *
 * The file system: a root directory holding files f0..f<N-1> (empty regular
 * files) plus whatever is created in it or in directories made in it; LOOKUP,
 * GETATTR, SETATTR, FORGET, BATCH_FORGET, OPEN(DIR), READDIR(PLUS),
 * RELEASE(DIR), FLUSH, STATFS, CREATE, MKNOD, MKDIR, SYMLINK, WRITE (the data
 * is dropped, the size kept), UNLINK, RMDIR are answered, everything else
 * gets ENOSYS. Entry and attr timeouts are 0 in every reply, so the kernel
 * caches nothing: each stat(2) of a path costs a LOOKUP (dentry
 * revalidation) and a GETATTR round trip. With -c they are a day and the
 * mount uses default_permissions, as the xv6 mount does, so the kernel
 * sends the requests it sends there (floor.sh: what a server that does no
 * work at all gets).
 *
 * Usage: probe -t classic|uring -m MOUNTPOINT [-n NFILES] [-T THREADS]
 *              [-d DEPTH] [-f RINGFLAGS] [-c [-N]] [-P]
 *   -T  classic reader threads (default 2; in uring mode always 1)
 *   -c  cache as the xv6 mount does: entry and attr timeouts of a day,
 *       default_permissions, no FLUSH; INIT asks for what bento-upgraded
 *       asks (READDIRPLUS, PARALLEL_DIROPS, ATOMIC_O_TRUNC,
 *       HANDLE_KILLPRIV_V2)
 *   -N  with -c, without default_permissions: the kernel leaves permission
 *       checks to the server (this one allows everything; ACCESS gets
 *       ENOSYS), so it no longer asks a directory's mode again after each
 *       change to it (floor.sh's "noperm")
 *   -P  classic readers spin on a non-blocking /dev/fuse instead of
 *       sleeping in read(2) (bento-upgraded polls for a while, then sleeps)
 *   -d  ring entries per queue (default 4)
 *   -f  io_uring setup flags: "plain" (SQE128 only) or "defer" (SQE128 |
 *       SINGLE_ISSUER | DEFER_TASKRUN, the default)
 *   -M  highest protocol minor to answer INIT with (default 42; 38 shows
 *       whether the kernel takes FUSE_OVER_IO_URING from a 7.38 server
 *       such as libfuse 3.14)
 *   -F  failover: a child process serves and kills itself (SIGKILL) on
 *       a LOOKUP of "killme", holding that request; the parent, which
 *       kept the /dev/fuse fd, waits -G milliseconds (default 0), writes
 *       FUSE_NOTIFY_RESEND and serves the same way (failover.sh)
 *   -A  with -F over io_uring, adopt: the ring entries' buffers live in
 *       memory the parent shares with the child (mapped before the fork,
 *       so at the same addresses in both). The parent registers entries
 *       of its own, answers each request the child held from the shared
 *       buffers and commits it through its own ring (the kernel finds the
 *       request by its unique and reads the reply at the entry's
 *       addresses), then sends one request from each CPU so that what
 *       queued while nobody served is fetched (README, "Adopting a dead
 *       server's ring entries")
 * Runs in the foreground until the mount is unmounted, then prints the
 * request counts by opcode and by transport to stderr.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <linux/io_uring.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <signal.h>
#include <unistd.h>

/* ---- FUSE over io_uring UAPI (include/uapi/linux/fuse.h, 7.42) --------
 * Debian 12's linux-libc-dev carries fuse.h 7.38, which predates these. */
#ifndef FUSE_OVER_IO_URING
#define FUSE_OVER_IO_URING (1ULL << 41)
#endif
#ifndef FUSE_URING_IN_OUT_HEADER_SZ
#define FUSE_URING_IN_OUT_HEADER_SZ 128
#define FUSE_URING_OP_IN_OUT_SZ 128
struct fuse_uring_ent_in_out {
	uint64_t flags;
	uint64_t commit_id;  /* request unique, echoed in the commit */
	uint32_t payload_sz; /* bytes in the payload buffer (args after arg 0) */
	uint32_t padding;
	uint64_t reserved;
};
struct fuse_uring_req_header {
	char in_out[FUSE_URING_IN_OUT_HEADER_SZ]; /* fuse_in/out_header */
	char op_in[FUSE_URING_OP_IN_OUT_SZ];      /* first in-arg (per-op struct) */
	struct fuse_uring_ent_in_out ring_ent_in_out;
};
enum fuse_uring_cmd {
	FUSE_IO_URING_CMD_INVALID = 0,
	FUSE_IO_URING_CMD_REGISTER = 1,
	FUSE_IO_URING_CMD_COMMIT_AND_FETCH = 2,
};
struct fuse_uring_cmd_req { /* in the 80-byte command area of an SQE128 */
	uint64_t flags;
	uint64_t commit_id;
	uint16_t qid;
	uint8_t padding[6];
};
#endif
_Static_assert(sizeof(struct fuse_uring_req_header) == 288, "uring header");
_Static_assert(sizeof(struct fuse_uring_cmd_req) == 24, "uring cmd");

#define MAX_WRITE (128 * 1024)
#define PAYLOAD_SZ (MAX_WRITE + 4096)
#define CLASSIC_BUF (MAX_WRITE + 4096)
#define MAX_NODES (1 << 20)
#define HASH_SZ (1 << 19)

/* ---- the file system ---------------------------------------------------- */
struct node {
	uint32_t mode;
	uint32_t nlink;
	uint32_t uid, gid;
	uint64_t size;
	uint64_t parent;
	uint64_t first, next, prev; /* children of a directory, newest first */
	char name[256];
};
static struct node *nodes; /* index = nodeid; 1 = root */
static uint64_t next_node = 2;
static int32_t *htab; /* name hash -> nodeid; 0 empty, -1 tombstone */
static pthread_mutex_t fs_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t live_files;

static uint32_t hash_name(uint64_t parent, const char *s)
{
	uint32_t h = 2166136261u ^ (uint32_t)parent;
	while (*s)
		h = (h ^ (uint8_t)*s++) * 16777619u;
	return h;
}

/* returns slot index of name in directory parent, or -1 */
static long find_slot(uint64_t parent, const char *name)
{
	uint32_t h = hash_name(parent, name) & (HASH_SZ - 1);
	for (uint32_t i = 0; i < HASH_SZ; i++) {
		uint32_t s = (h + i) & (HASH_SZ - 1);
		if (htab[s] == 0)
			return -1;
		if (htab[s] > 0 && nodes[htab[s]].parent == parent &&
		    strcmp(nodes[htab[s]].name, name) == 0)
			return s;
	}
	return -1;
}

static uint64_t fs_lookup(uint64_t parent, const char *name)
{
	long s = find_slot(parent, name);
	return s < 0 ? 0 : (uint64_t)htab[s];
}

static int fs_create(uint64_t parent, const char *name, uint32_t mode,
		     uint64_t *id)
{
	if (strlen(name) >= sizeof nodes[0].name)
		return -ENAMETOOLONG;
	if (find_slot(parent, name) >= 0)
		return -EEXIST;
	if (next_node >= MAX_NODES)
		return -ENOSPC;
	uint32_t h = hash_name(parent, name) & (HASH_SZ - 1);
	for (uint32_t i = 0; i < HASH_SZ; i++) {
		uint32_t s = (h + i) & (HASH_SZ - 1);
		if (htab[s] <= 0) {
			uint64_t n = next_node++;
			nodes[n].mode = mode;
			nodes[n].nlink = S_ISDIR(mode) ? 2 : 1;
			nodes[n].parent = parent;
			nodes[n].next = nodes[parent].first;
			if (nodes[parent].first)
				nodes[nodes[parent].first].prev = n;
			nodes[parent].first = n;
			strcpy(nodes[n].name, name);
			htab[s] = (int32_t)n;
			live_files++;
			*id = n;
			return 0;
		}
	}
	return -ENOSPC;
}

static int fs_unlink(uint64_t parent, const char *name)
{
	long s = find_slot(parent, name);
	if (s < 0)
		return -ENOENT;
	struct node *n = &nodes[htab[s]];
	n->nlink = 0;
	/* out of its directory's list; n->next stays for a reader there */
	if (n->prev)
		nodes[n->prev].next = n->next;
	else
		nodes[n->parent].first = n->next;
	if (n->next)
		nodes[n->next].prev = n->prev;
	htab[s] = -1;
	live_files--;
	return 0;
}

static int is_dir(uint64_t id)
{
	return id < next_node && S_ISDIR(nodes[id].mode);
}

static void fill_attr(uint64_t id, struct fuse_attr *a)
{
	memset(a, 0, sizeof *a);
	a->ino = id;
	a->mode = nodes[id].mode;
	a->nlink = nodes[id].nlink;
	a->uid = nodes[id].uid;
	a->gid = nodes[id].gid;
	a->size = nodes[id].size;
	a->blksize = 4096;
	a->atime = a->mtime = a->ctime = 1700000000;
}

static uint64_t cache_timeout; /* -c: a day */
static int kernel_checks = 1; /* -N: 0, no default_permissions */
static int spin_readers;       /* -P: /dev/fuse is O_NONBLOCK, readers spin */

static void fill_entry(uint64_t id, struct fuse_entry_out *e)
{
	memset(e, 0, sizeof *e);
	e->nodeid = id;
	e->generation = 1;
	e->entry_valid = cache_timeout; /* 0: every access revalidates */
	e->attr_valid = cache_timeout;
	fill_attr(id, &e->attr);
}

/* ---- request dispatch (transport independent) ---------------------------- */
static atomic_ulong op_count[64];
static atomic_ulong via_classic, via_uring;
static int use_uring;
/* -F: the serving child dies on LOOKUP "killme"; the parent takes over */
static int die_on_lookup;
static int failover_gap_ms;
static uint32_t proto_minor, reply_minor = 42;
static atomic_ulong len_mismatch; /* uring: in.len != 40 + arg0 + payload */

static int fuse_fd;

/* size of the first (per-op) in-arg; with io_uring it travels in op_in,
 * everything after it in the payload buffer */
static size_t arg0_size(uint32_t opcode)
{
	switch (opcode) {
	case FUSE_GETATTR: return sizeof(struct fuse_getattr_in);
	case FUSE_SETATTR: return sizeof(struct fuse_setattr_in);
	case FUSE_CREATE: return sizeof(struct fuse_create_in);
	case FUSE_MKNOD: return sizeof(struct fuse_mknod_in);
	case FUSE_MKDIR: return sizeof(struct fuse_mkdir_in);
	case FUSE_OPEN: case FUSE_OPENDIR: return sizeof(struct fuse_open_in);
	case FUSE_READDIR: case FUSE_READDIRPLUS: case FUSE_READ:
		return sizeof(struct fuse_read_in);
	case FUSE_WRITE: return sizeof(struct fuse_write_in);
	case FUSE_RELEASE: case FUSE_RELEASEDIR:
		return sizeof(struct fuse_release_in);
	case FUSE_FLUSH: return sizeof(struct fuse_flush_in);
	case FUSE_FORGET: return sizeof(struct fuse_forget_in);
	case FUSE_BATCH_FORGET: return sizeof(struct fuse_batch_forget_in);
	case FUSE_INIT: return sizeof(struct fuse_init_in);
	default: return 0; /* LOOKUP, UNLINK, RMDIR, SYMLINK, STATFS: arg 0 is empty */
	}
}

/*
 * Handle one request. arg0 = per-op struct, rest = following args (names).
 * Writes the reply body to out (up to outmax) and returns its length, or a
 * negative errno; returns INT32_MIN when no reply must be sent.
 */
#define NO_REPLY INT32_MIN
static int handle(const struct fuse_in_header *ih, const void *arg0,
		  const char *rest, size_t restlen, char *out, size_t outmax)
{
	uint32_t op = ih->opcode;
	atomic_fetch_add(&op_count[op < 64 ? op : 63], 1);
	int ret = -ENOSYS;

	switch (op) {
	case FUSE_INIT: {
		const struct fuse_init_in *in = arg0;
		struct fuse_init_out *o = (void *)out;
		memset(o, 0, sizeof *o);
		o->major = FUSE_KERNEL_VERSION;
		proto_minor = in->minor < reply_minor ? in->minor : reply_minor;
		o->minor = proto_minor;
		o->max_readahead = in->max_readahead;
		o->flags = FUSE_INIT_EXT | (in->flags & FUSE_ASYNC_READ);
		if (cache_timeout)
			o->flags |= in->flags & (FUSE_DO_READDIRPLUS |
				FUSE_PARALLEL_DIROPS | FUSE_ATOMIC_O_TRUNC |
				FUSE_HANDLE_KILLPRIV_V2 | FUSE_BIG_WRITES);
		if (use_uring)
			o->flags2 = (uint32_t)(FUSE_OVER_IO_URING >> 32);
		o->max_background = 16;
		o->congestion_threshold = 12;
		o->max_write = MAX_WRITE;
		o->time_gran = 1;
		fprintf(stderr, "probe: INIT kernel %u.%u flags 0x%x flags2 0x%x"
			" (kernel offers io_uring: %s); reply %u.%u flags2 0x%x\n",
			in->major, in->minor, in->flags,
			(in->flags & FUSE_INIT_EXT) ? in->flags2 : 0,
			((in->flags & FUSE_INIT_EXT) &&
			 (in->flags2 & (FUSE_OVER_IO_URING >> 32))) ? "yes" : "no",
			o->major, o->minor, o->flags2);
		return sizeof *o;
	}
	case FUSE_DESTROY:
		return 0;
	case FUSE_FORGET:
	case FUSE_BATCH_FORGET:
	case FUSE_INTERRUPT:
		return NO_REPLY;
	}

	pthread_mutex_lock(&fs_lock);
	switch (op) {
	case FUSE_LOOKUP: {
		if (!is_dir(ih->nodeid)) { ret = -ENOTDIR; break; }
		if (die_on_lookup && strcmp(rest, "killme") == 0) {
			fprintf(stderr, "probe: server %d dies holding LOOKUP killme"
				" (unique %llu)\n", getpid(),
				(unsigned long long)ih->unique);
			kill(getpid(), SIGKILL);
		}
		uint64_t id = fs_lookup(ih->nodeid, rest);
		if (!id) { ret = -ENOENT; break; }
		fill_entry(id, (void *)out);
		ret = sizeof(struct fuse_entry_out);
		break;
	}
	case FUSE_GETATTR:
	case FUSE_SETATTR: {
		if (ih->nodeid >= next_node) { ret = -ENOENT; break; }
		if (op == FUSE_SETATTR) {
			const struct fuse_setattr_in *in = arg0;
			struct node *n = &nodes[ih->nodeid];
			if (in->valid & FATTR_MODE)
				n->mode = (n->mode & S_IFMT) | (in->mode & 07777);
			if (in->valid & FATTR_UID) n->uid = in->uid;
			if (in->valid & FATTR_GID) n->gid = in->gid;
			if (in->valid & FATTR_SIZE) n->size = in->size;
		}
		struct fuse_attr_out *a = (void *)out;
		memset(a, 0, sizeof *a);
		a->attr_valid = cache_timeout;
		fill_attr(ih->nodeid, &a->attr);
		ret = sizeof *a;
		break;
	}
	case FUSE_WRITE: {
		const struct fuse_write_in *in = arg0;
		if (ih->nodeid >= next_node) { ret = -ENOENT; break; }
		if (in->offset + in->size > nodes[ih->nodeid].size)
			nodes[ih->nodeid].size = in->offset + in->size;
		struct fuse_write_out *o = (void *)out;
		memset(o, 0, sizeof *o);
		o->size = in->size;
		ret = sizeof *o;
		break;
	}
	case FUSE_OPEN:
	case FUSE_OPENDIR: {
		struct fuse_open_out *o = (void *)out;
		memset(o, 0, sizeof *o);
		ret = sizeof *o;
		break;
	}
	case FUSE_RELEASE:
	case FUSE_RELEASEDIR:
		ret = 0;
		break;
	case FUSE_FLUSH: /* -c: ENOSYS, and the kernel sends no more, as there */
		ret = cache_timeout ? -ENOSYS : 0;
		break;
	case FUSE_READDIR:
	case FUSE_READDIRPLUS: {
		/* offsets: 1 = ".", 2 = "..", id + 3 = the child after node id */
		const struct fuse_read_in *in = arg0;
		uint64_t off = in->offset;
		size_t len = 0, max = in->size < outmax ? in->size : outmax;
		int plus = op == FUSE_READDIRPLUS;
		for (;;) {
			const char *name; uint64_t ino; uint32_t type;
			uint64_t next;
			if (off == 0) { name = "."; ino = 0; type = DT_DIR; next = 1; }
			else if (off == 1) { name = ".."; ino = 0; type = DT_DIR; next = 2; }
			else {
				ino = off == 2 ? nodes[ih->nodeid].first :
					nodes[off - 3].next;
				if (!ino)
					break;
				name = nodes[ino].name; next = ino + 3;
				type = S_ISDIR(nodes[ino].mode) ? DT_DIR :
				       S_ISLNK(nodes[ino].mode) ? DT_LNK : DT_REG;
			}
			size_t nl = strlen(name);
			size_t rec = FUSE_DIRENT_ALIGN(FUSE_NAME_OFFSET + nl);
			size_t entry = plus ? sizeof(struct fuse_entry_out) : 0;
			if (len + entry + rec > max)
				break;
			if (plus) {
				struct fuse_entry_out *e = (void *)(out + len);
				if (ino)
					fill_entry(ino, e);
				else
					memset(e, 0, sizeof *e); /* . and ..: no entry */
				len += entry;
			}
			struct fuse_dirent *d = (void *)(out + len);
			memset(d, 0, rec);
			d->ino = ino ? ino : 1; d->off = next; d->namelen = nl; d->type = type;
			memcpy(d->name, name, nl);
			len += rec;
			off = next;
		}
		ret = len;
		break;
	}
	case FUSE_STATFS: {
		struct fuse_statfs_out *s = (void *)out;
		memset(s, 0, sizeof *s);
		s->st.blocks = 1 << 20; s->st.bfree = s->st.bavail = 1 << 19;
		s->st.files = MAX_NODES; s->st.ffree = MAX_NODES - live_files;
		s->st.bsize = s->st.frsize = 4096; s->st.namelen = 255;
		ret = sizeof *s;
		break;
	}
	case FUSE_CREATE:
	case FUSE_MKNOD:
	case FUSE_MKDIR:
	case FUSE_SYMLINK: {
		if (!is_dir(ih->nodeid)) { ret = -ENOTDIR; break; }
		uint32_t mode = op == FUSE_CREATE ?
			((const struct fuse_create_in *)arg0)->mode :
			op == FUSE_MKNOD ?
			((const struct fuse_mknod_in *)arg0)->mode :
			op == FUSE_MKDIR ?
			S_IFDIR | (((const struct fuse_mkdir_in *)arg0)->mode & 07777) :
			S_IFLNK | 0777;
		uint64_t id;
		ret = fs_create(ih->nodeid, rest, mode, &id);
		if (ret)
			break;
		fill_entry(id, (void *)out);
		ret = sizeof(struct fuse_entry_out);
		if (op == FUSE_CREATE) {
			memset(out + ret, 0, sizeof(struct fuse_open_out));
			ret += sizeof(struct fuse_open_out);
		}
		break;
	}
	case FUSE_UNLINK:
	case FUSE_RMDIR: /* a probe: no emptiness check */
		if (!is_dir(ih->nodeid)) { ret = -ENOTDIR; break; }
		ret = fs_unlink(ih->nodeid, rest);
		break;
	}
	pthread_mutex_unlock(&fs_lock);
	(void)restlen;
	return ret;
}

/* ---- classic transport --------------------------------------------------- */
static void *classic_thread(void *arg)
{
	(void)arg;
	char *buf = malloc(CLASSIC_BUF);
	char *out = malloc(CLASSIC_BUF);
	for (;;) {
		ssize_t n = read(fuse_fd, buf, CLASSIC_BUF);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == ENOENT)
				continue;
			if (errno != ENODEV)
				perror("probe: read /dev/fuse");
			break;
		}
		struct fuse_in_header *ih = (void *)buf;
		size_t a0 = arg0_size(ih->opcode);
		char *arg0 = buf + sizeof *ih;
		char *rest = arg0 + a0;
		size_t restlen = n - sizeof *ih - a0;
		atomic_fetch_add(&via_classic, 1);
		int r = handle(ih, arg0, rest, restlen, out, CLASSIC_BUF);
		if (r == NO_REPLY)
			continue;
		struct fuse_out_header oh = { .unique = ih->unique };
		struct iovec iov[2] = { { &oh, sizeof oh }, { out, r > 0 ? r : 0 } };
		oh.error = r < 0 ? r : 0;
		oh.len = sizeof oh + (r > 0 ? r : 0);
		if (writev(fuse_fd, iov, r > 0 ? 2 : 1) < 0 && errno != ENOENT)
			perror("probe: write /dev/fuse");
		if (ih->opcode == FUSE_INIT && use_uring) {
			/* the uring threads wait for this */
			extern atomic_int init_done;
			atomic_store(&init_done, 1);
		}
	}
	free(buf);
	free(out);
	return NULL;
}

/* ---- io_uring transport (raw syscalls) ------------------------------------ */
atomic_int init_done;
static unsigned ring_depth = 4;
static int ring_defer = 1;
static int nqueues;
static atomic_int queues_registered;

struct ring {
	int fd;
	unsigned sq_entries, cq_entries;
	unsigned *sq_head, *sq_tail, *sq_mask, *sq_array;
	unsigned *cq_head, *cq_tail, *cq_mask;
	struct io_uring_sqe *sqes; /* 128-byte entries: index with sqe_at */
	struct io_uring_cqe *cqes;
};

static struct io_uring_sqe *sqe_at(struct ring *r, unsigned i)
{
	return (struct io_uring_sqe *)((char *)r->sqes + 128 * i);
}

static int ring_setup(struct ring *r, unsigned entries, unsigned flags)
{
	struct io_uring_params p;
	memset(&p, 0, sizeof p);
	p.flags = flags;
	r->fd = syscall(__NR_io_uring_setup, entries, &p);
	if (r->fd < 0)
		return -errno;
	size_t sq_sz = p.sq_off.array + p.sq_entries * sizeof(unsigned);
	size_t cq_sz = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
	if (p.features & IORING_FEAT_SINGLE_MMAP)
		sq_sz = cq_sz = sq_sz > cq_sz ? sq_sz : cq_sz;
	char *sq = mmap(NULL, sq_sz, PROT_READ | PROT_WRITE,
			MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQ_RING);
	if (sq == MAP_FAILED)
		return -errno;
	char *cq = sq;
	if (!(p.features & IORING_FEAT_SINGLE_MMAP)) {
		cq = mmap(NULL, cq_sz, PROT_READ | PROT_WRITE,
			  MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_CQ_RING);
		if (cq == MAP_FAILED)
			return -errno;
	}
	r->sqes = mmap(NULL, p.sq_entries * 128, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQES);
	if (r->sqes == MAP_FAILED)
		return -errno;
	r->sq_entries = p.sq_entries;
	r->cq_entries = p.cq_entries;
	r->sq_head = (void *)(sq + p.sq_off.head);
	r->sq_tail = (void *)(sq + p.sq_off.tail);
	r->sq_mask = (void *)(sq + p.sq_off.ring_mask);
	r->sq_array = (void *)(sq + p.sq_off.array);
	r->cq_head = (void *)(cq + p.cq_off.head);
	r->cq_tail = (void *)(cq + p.cq_off.tail);
	r->cq_mask = (void *)(cq + p.cq_off.ring_mask);
	r->cqes = (void *)(cq + p.cq_off.cqes);
	return 0;
}

struct ent {
	struct fuse_uring_req_header hdr;
	char *payload;
	struct iovec iov[2];
	atomic_int held; /* -A: between the CQE and the commit's submission */
};

/* -A: per queue, 2 x ring_depth entries shared with the child: the child
 * registers the first ring_depth, the parent the others. */
static int adopt;
static struct ent *shared_ents;
static char *shared_payloads;
static int adopting; /* in the parent, after the child's death */
static const char *mountpoint;

static void queue_cmd(struct ring *r, struct ent *e, unsigned idx, int qid,
		      uint32_t cmd_op, uint64_t commit_id)
{
	unsigned tail = *r->sq_tail;
	unsigned slot = tail & *r->sq_mask;
	struct io_uring_sqe *sqe = sqe_at(r, slot);
	memset(sqe, 0, 128);
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = fuse_fd;
	sqe->cmd_op = cmd_op;
	sqe->addr = (uint64_t)(uintptr_t)e->iov;
	sqe->len = 2;
	sqe->user_data = idx;
	struct fuse_uring_cmd_req *req = (void *)sqe->cmd;
	req->qid = qid;
	req->commit_id = commit_id;
	r->sq_array[slot] = slot;
	atomic_store_explicit((_Atomic unsigned *)r->sq_tail, tail + 1,
			      memory_order_release);
}

static int ring_enter(struct ring *r, unsigned submit, unsigned wait)
{
	int ret = syscall(__NR_io_uring_enter, r->fd, submit, wait,
			  wait ? IORING_ENTER_GETEVENTS : 0, NULL, 0);
	return ret < 0 ? -errno : ret;
}

/* Answers the request in entry `idx` (`out`: scratch) and queues its
 * commit, which also fetches the next request into the entry. */
static void answer(struct ring *r, struct ent *e, unsigned idx, int qid,
		   char *out)
{
	struct fuse_in_header *ih = (void *)e->hdr.in_out;
	struct fuse_uring_ent_in_out *io = &e->hdr.ring_ent_in_out;
	/* names arrive NUL-terminated in the payload */
	int rr = handle(ih, e->hdr.op_in, e->payload, io->payload_sz, out,
			PAYLOAD_SZ);
	uint64_t unique = ih->unique;
	uint64_t commit = io->commit_id;
	struct fuse_out_header *oh = (void *)e->hdr.in_out;
	size_t bodylen = rr > 0 ? (size_t)rr : 0;
	if (bodylen)
		memcpy(e->payload, out, bodylen);
	oh->unique = unique;
	oh->error = rr < 0 && rr != NO_REPLY ? rr : 0;
	oh->len = sizeof *oh + bodylen;
	io->payload_sz = bodylen;
	queue_cmd(r, e, idx, qid, FUSE_IO_URING_CMD_COMMIT_AND_FETCH, commit);
	atomic_store(&e->held, 0);
}

static void *uring_thread(void *arg)
{
	int qid = (int)(intptr_t)arg;
	cpu_set_t mask;
	if (sched_getaffinity(0, sizeof mask, &mask) == 0 &&
	    CPU_ISSET(qid, &mask)) {
		CPU_ZERO(&mask);
		CPU_SET(qid, &mask);
		sched_setaffinity(0, sizeof mask, &mask);
	}
	struct ring r;
	unsigned flags = IORING_SETUP_SQE128;
	if (ring_defer)
		flags |= IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
	int err = ring_setup(&r, ring_depth, flags);
	if (err) {
		fprintf(stderr, "probe: q%d io_uring_setup(%u, flags 0x%x): %s\n",
			qid, ring_depth, flags, strerror(-err));
		exit(2);
	}
	struct ent *ents;
	unsigned first = 0; /* the entries this process registers */
	if (shared_ents) {
		ents = shared_ents + (size_t)qid * 2 * ring_depth;
		first = adopting ? ring_depth : 0;
	} else {
		ents = calloc(ring_depth, sizeof *ents);
	}
	for (unsigned i = first; i < first + ring_depth; i++) {
		struct ent *e = &ents[i];
		e->payload = shared_ents
			? shared_payloads + ((size_t)qid * 2 * ring_depth + i) * PAYLOAD_SZ
			: aligned_alloc(4096, PAYLOAD_SZ);
		memset(e->payload, 0, PAYLOAD_SZ);
		e->iov[0] = (struct iovec){ &e->hdr, sizeof e->hdr };
		e->iov[1] = (struct iovec){ e->payload, PAYLOAD_SZ };
		queue_cmd(&r, e, i, qid, FUSE_IO_URING_CMD_REGISTER, 0);
	}
	int n = ring_enter(&r, ring_depth, 0);
	if (n != (int)ring_depth) {
		fprintf(stderr, "probe: q%d submitting %u REGISTER: %d (%s)\n",
			qid, ring_depth, n, n < 0 ? strerror(-n) : "short");
		exit(2);
	}
	atomic_fetch_add(&queues_registered, 1);
	char *out = malloc(PAYLOAD_SZ);
	unsigned to_submit = 0;
	if (adopting) {
		/* the dead child's held requests: answer them from the shared
		 * buffers and commit through this ring */
		for (unsigned i = 0; i < ring_depth; i++) {
			struct ent *e = &ents[i];
			if (!atomic_load(&e->held))
				continue;
			fprintf(stderr, "probe: q%d adopts entry %u holding opcode"
				" %u (unique %llu)\n", qid, i,
				((struct fuse_in_header *)e->hdr.in_out)->opcode,
				(unsigned long long)e->hdr.ring_ent_in_out.commit_id);
			answer(&r, e, i, qid, out);
			to_submit++;
		}
	}
	for (;;) {
		n = ring_enter(&r, to_submit, 1);
		if (n < 0) {
			if (n == -EINTR)
				continue;
			fprintf(stderr, "probe: q%d io_uring_enter: %s\n", qid,
				strerror(-n));
			break;
		}
		to_submit = 0;
		unsigned head = *r.cq_head;
		unsigned tail = atomic_load_explicit((_Atomic unsigned *)r.cq_tail,
						     memory_order_acquire);
		int stop = 0;
		for (; head != tail; head++) {
			struct io_uring_cqe *cqe = &r.cqes[head & *r.cq_mask];
			struct ent *e = &ents[cqe->user_data];
			if (cqe->res < 0) {
				if (cqe->res != -ENOTCONN)
					fprintf(stderr, "probe: q%d entry %llu"
						" completed with %s\n", qid,
						(unsigned long long)cqe->user_data,
						strerror(-cqe->res));
				stop = 1;
				continue;
			}
			atomic_store(&e->held, 1);
			struct fuse_in_header *ih = (void *)e->hdr.in_out;
			atomic_fetch_add(&via_uring, 1);
			if (ih->len != sizeof *ih + arg0_size(ih->opcode) +
				       e->hdr.ring_ent_in_out.payload_sz)
				atomic_fetch_add(&len_mismatch, 1);
			answer(&r, e, cqe->user_data, qid, out);
			to_submit++;
		}
		atomic_store_explicit((_Atomic unsigned *)r.cq_head, head,
				      memory_order_release);
		if (stop)
			break;
	}
	free(out);
	return NULL;
}

/* -A: a request queued on a CPU's queue while no entry was registered is
 * fetched only when an entry of that queue commits; a stat of the mount
 * root from each CPU (timeouts are 0 without -c: a GETATTR) makes one. */
static void *kick_thread(void *arg)
{
	int cpu = (int)(intptr_t)arg;
	cpu_set_t mask;
	CPU_ZERO(&mask);
	CPU_SET(cpu, &mask);
	sched_setaffinity(0, sizeof mask, &mask);
	struct stat st;
	if (stat(mountpoint, &st) != 0)
		fprintf(stderr, "probe: kick on cpu%d: %s\n", cpu, strerror(errno));
	return NULL;
}

static void kick_queues(void)
{
	for (int q = 0; q < nqueues; q++) {
		pthread_t t;
		pthread_create(&t, NULL, kick_thread, (void *)(intptr_t)q);
		pthread_detach(t);
	}
	fprintf(stderr, "probe: kicked %d queues\n", nqueues);
}

/* Runs the transport's threads until the mount goes away. */
static void serve(const char *transport, int nthreads, const char *mnt,
		  int nfiles)
{
	pthread_t th[64];
	for (int i = 0; i < nthreads && i < 64; i++)
		pthread_create(&th[i], NULL, classic_thread, NULL);

	pthread_t qth[256];
	if (use_uring) {
		/* the kernel makes one queue per possible CPU and routes a
		 * request to queue task_cpu(requester); it switches to the ring
		 * only when every queue has an entry registered */
		nqueues = get_nprocs_conf();
		while (!atomic_load(&init_done))
			usleep(1000);
		for (int q = 0; q < nqueues && q < 256; q++)
			pthread_create(&qth[q], NULL, uring_thread,
				       (void *)(intptr_t)q);
		while (atomic_load(&queues_registered) < nqueues)
			usleep(1000);
		if (adopting)
			kick_queues();
		fprintf(stderr, "probe: %d queues x %u entries registered"
			" (ring flags: %s)\n", nqueues, ring_depth,
			ring_defer ? "SQE128|SINGLE_ISSUER|DEFER_TASKRUN"
				   : "SQE128");
	}
	fprintf(stderr, "probe: serving %s on %s (%d files)\n", transport, mnt,
		nfiles);
	for (int i = 0; i < nthreads; i++)
		pthread_join(th[i], NULL);
	if (use_uring)
		for (int q = 0; q < nqueues; q++)
			pthread_join(qth[q], NULL);
}

/* ---- main ---------------------------------------------------------------- */
int main(int argc, char **argv)
{
	const char *mnt = NULL, *transport = "classic";
	int nfiles = 100, nthreads = 2, c;
	while ((c = getopt(argc, argv, "t:m:n:T:d:f:M:FG:cNPA")) != -1) {
		switch (c) {
		case 't': transport = optarg; break;
		case 'm': mnt = optarg; break;
		case 'n': nfiles = atoi(optarg); break;
		case 'T': nthreads = atoi(optarg); break;
		case 'd': ring_depth = atoi(optarg); break;
		case 'f': ring_defer = strcmp(optarg, "plain") != 0; break;
		case 'M': reply_minor = atoi(optarg); break;
		case 'F': die_on_lookup = 1; break;
		case 'G': failover_gap_ms = atoi(optarg); break;
		case 'c': cache_timeout = 86400; break;
		case 'N': kernel_checks = 0; break;
		case 'P': spin_readers = 1; break;
		case 'A': adopt = 1; break;
		default: goto usage;
		}
	}
	if (!mnt) {
usage:
		fprintf(stderr, "usage: probe -t classic|uring -m MNT [-n N]"
			" [-T threads] [-d depth] [-f plain|defer] [-M minor]"
			" [-F [-G ms] [-A]] [-c [-N]] [-P]\n");
		return 1;
	}
	use_uring = strcmp(transport, "uring") == 0;
	if (use_uring)
		nthreads = 1;

	nodes = calloc(MAX_NODES, sizeof *nodes);
	htab = calloc(HASH_SZ, sizeof *htab);
	nodes[1].mode = S_IFDIR | 0755;
	nodes[1].nlink = 2;
	for (int i = 0; i < nfiles; i++) {
		char name[32];
		uint64_t id;
		snprintf(name, sizeof name, "f%d", i);
		fs_create(FUSE_ROOT_ID, name, S_IFREG | 0644, &id);
	}

	fuse_fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
	if (fuse_fd < 0) {
		perror("probe: open /dev/fuse");
		return 1;
	}
	char opts[128];
	snprintf(opts, sizeof opts, "fd=%d,rootmode=40000,user_id=0,group_id=0%s",
		 fuse_fd, cache_timeout && kernel_checks ? ",default_permissions" : "");
	if (mount("probe", mnt, "fuse.probe", MS_NOSUID | MS_NODEV, opts) < 0) {
		perror("probe: mount");
		return 1;
	}
	if (spin_readers && fcntl(fuse_fd, F_SETFL, O_NONBLOCK) < 0) {
		perror("probe: O_NONBLOCK");
		return 1;
	}

	mountpoint = mnt;
	if (die_on_lookup && adopt && use_uring) {
		size_t count = (size_t)get_nprocs_conf() * 2 * ring_depth;
		shared_ents = mmap(NULL, count * sizeof *shared_ents,
				   PROT_READ | PROT_WRITE,
				   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		shared_payloads = mmap(NULL, count * PAYLOAD_SZ,
				       PROT_READ | PROT_WRITE,
				       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (shared_ents == MAP_FAILED || shared_payloads == MAP_FAILED) {
			perror("probe: mmap of the shared entries");
			return 1;
		}
	}
	if (die_on_lookup) {
		pid_t child = fork();
		if (child == 0) {
			serve(transport, nthreads, mnt, nfiles);
			_exit(0);
		}
		int status;
		waitpid(child, &status, 0);
		fprintf(stderr, "probe: server %d ended (%s); parent %d takes over"
			" after %d ms\n", child,
			WIFSIGNALED(status) ? "killed" : "exited", getpid(),
			failover_gap_ms);
		if (!WIFSIGNALED(status))
			return 0;
		usleep(failover_gap_ms * 1000);
		die_on_lookup = 0;
		adopting = shared_ents != NULL;
		atomic_store(&init_done, 1); /* the child answered INIT */
		struct fuse_out_header resend = { .len = sizeof resend,
						  .error = 7 /* NOTIFY_RESEND */ };
		if (write(fuse_fd, &resend, sizeof resend) != sizeof resend)
			perror("probe: FUSE_NOTIFY_RESEND");
		else
			fprintf(stderr, "probe: FUSE_NOTIFY_RESEND written\n");
	}
	serve(transport, nthreads, mnt, nfiles);
	static const struct { int op; const char *name; } names[] = {
		{ FUSE_LOOKUP, "LOOKUP" }, { FUSE_FORGET, "FORGET" },
		{ FUSE_GETATTR, "GETATTR" }, { FUSE_SETATTR, "SETATTR" },
		{ FUSE_MKNOD, "MKNOD" }, { FUSE_UNLINK, "UNLINK" },
		{ FUSE_OPEN, "OPEN" }, { FUSE_STATFS, "STATFS" },
		{ FUSE_RELEASE, "RELEASE" }, { FUSE_FLUSH, "FLUSH" },
		{ FUSE_INIT, "INIT" }, { FUSE_OPENDIR, "OPENDIR" },
		{ FUSE_READDIR, "READDIR" }, { FUSE_RELEASEDIR, "RELEASEDIR" },
		{ FUSE_ACCESS, "ACCESS" }, { FUSE_CREATE, "CREATE" },
		{ FUSE_INTERRUPT, "INTERRUPT" }, { FUSE_DESTROY, "DESTROY" },
		{ FUSE_BATCH_FORGET, "BATCH_FORGET" },
	};
	fprintf(stderr, "probe: counts classic=%lu uring=%lu",
		atomic_load(&via_classic), atomic_load(&via_uring));
	unsigned long known = 0, total = 0;
	for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++) {
		unsigned long v = atomic_load(&op_count[names[i].op]);
		known += v;
		if (v)
			fprintf(stderr, " %s=%lu", names[i].name, v);
	}
	for (int i = 0; i < 64; i++)
		total += atomic_load(&op_count[i]);
	fprintf(stderr, " other=%lu", total - known);
	fprintf(stderr, " uring_len_mismatch=%lu\n", atomic_load(&len_mismatch));
	return 0;
}
