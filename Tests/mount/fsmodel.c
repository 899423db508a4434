// A model-based persistence test: random file operations on a mounted
// directory, mirrored on an in-memory model of every file; the model is
// saved beside, and `check` compares the directory with it byte for byte.
// The test scripts run `check` after the kernel's cache is gone (drop_caches,
// a remount, a restart, a kill -9, an upgrade, a rollback), so what is
// compared is what reached the file system, not the page cache.
//
//   fsmodel run   DIR MODEL SEED OPS THREADS   (continues a saved model)
//   fsmodel check DIR MODEL [direct]
//
// `direct` reads with O_DIRECT: from the file system, never the kernel's
// page cache, for where drop_caches cannot be written (a container).
//
// Each thread owns its own names (tT_N, links tT_lN), so the final state is
// known whatever the interleaving across threads. Operations: pwrite,
// appends through O_APPEND (one fd kept open across operations, as a log
// writer does, and fresh ones), truncate up and down, writes through a
// shared mmap, O_TRUNC rewrites, overwrites, sparse writes far past the end,
// rename over, link, unlink, create, fsync. fallocate is left out: xv6fs has
// none. Every failed system call is an error; the run prints its seed.
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define NAMES 4             // primary names per thread
#define LINKS 3             // link names per thread
#define MAX_SIZE (768 << 10)
#define MAX_INODES 4096

struct inode {              // the model of one file
    unsigned char *data;
    size_t size, cap;
    int used;
};

static struct inode inodes[MAX_INODES];
static int inode_count;
static pthread_mutex_t inode_lock = PTHREAD_MUTEX_INITIALIZER;
static const char *dir;

// name -> inode: slot [t][i], i < NAMES primary, then LINKS links; -1 none.
static int *names;
static int threads;
#define SLOTS (NAMES + LINKS)

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fsmodel: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    exit(2);
}

static uint64_t next(uint64_t *s) {  // splitmix64
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static size_t below(uint64_t *s, size_t n) { return n ? next(s) % n : 0; }

static void slot_name(char *buf, int t, int i) {
    if (i < NAMES) sprintf(buf, "%s/t%d_%d", dir, t, i);
    else sprintf(buf, "%s/t%d_l%d", dir, t, i - NAMES);
}

static int new_inode(void) {
    pthread_mutex_lock(&inode_lock);
    if (inode_count == MAX_INODES) die("too many inodes in the model");
    int id = inode_count++;
    inodes[id].used = 1;
    pthread_mutex_unlock(&inode_lock);
    return id;
}

static void resize(struct inode *n, size_t size) {
    if (size > n->cap) {
        size_t cap = size + 65536;
        n->data = realloc(n->data, cap);
        if (!n->data) die("out of memory");
        n->cap = cap;
    }
    if (size > n->size) memset(n->data + n->size, 0, size - n->size);
    n->size = size;
}

static void model_write(int id, size_t off, const unsigned char *buf, size_t len) {
    struct inode *n = &inodes[id];
    if (off + len > n->size) resize(n, off + len);
    memcpy(n->data + off, buf, len);
}

// Names of a thread that point at inode id.
static int links_of(int t, int id) {
    int count = 0;
    for (int i = 0; i < SLOTS; i++) count += names[t * SLOTS + i] == id;
    return count;
}

static void fill(uint64_t *s, unsigned char *buf, size_t len) {
    uint64_t x = next(s);
    for (size_t i = 0; i < len; i++) {
        if (i % 8 == 0) x = next(s);
        buf[i] = (unsigned char)(x >> (8 * (i % 8)));
    }
}

static void write_all(int fd, const unsigned char *buf, size_t len, off_t off, int append, const char *what) {
    size_t done = 0;
    while (done < len) {
        ssize_t n = append ? write(fd, buf + done, len - done) : pwrite(fd, buf + done, len - done, off + done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) die("%s: write of %zu bytes: %s", what, len, n < 0 ? strerror(errno) : "short");
        done += n;
    }
}

static int open_or_die(const char *path, int flags) {
    int fd = open(path, flags, 0644);
    if (fd < 0) die("open %s: %s", path, strerror(errno));
    return fd;
}

struct worker { int t; uint64_t seed; long ops; };

static void *work(void *arg) {
    struct worker *w = arg;
    int t = w->t;
    uint64_t s = w->seed;
    int *slot = names + t * SLOTS;
    unsigned char *buf = malloc(MAX_SIZE);
    char path[4096], other[4096];
    int log_fd = -1, log_slot = -1;  // a log writer's O_APPEND fd, kept open
    for (long op = 0; op < w->ops; op++) {
        int i = below(&s, NAMES);
        slot_name(path, t, i);
        if (slot[i] < 0) {  // create: write a first content
            int id = new_inode();
            size_t len = below(&s, 3) ? below(&s, 20000) : 0;
            fill(&s, buf, len);
            int fd = open_or_die(path, O_CREAT | O_EXCL | O_WRONLY);
            write_all(fd, buf, len, 0, 0, path);
            close(fd);
            slot[i] = id;
            model_write(id, 0, buf, len);
            continue;
        }
        int id = slot[i];
        struct inode *n = &inodes[id];
        size_t len = 1 + below(&s, below(&s, 4) ? 4096 : 65536), off;
        int kind = below(&s, 100);
        if (kind < 14) {  // pwrite anywhere up to a little past the end
            off = below(&s, n->size + 8192);
            if (off + len > MAX_SIZE) continue;
            fill(&s, buf, len);
            int fd = open_or_die(path, O_WRONLY);
            write_all(fd, buf, len, off, 0, path);
            close(fd);
            model_write(id, off, buf, len);
        } else if (kind < 34) {  // append through the kept log fd, or a fresh one
            if (n->size + len > MAX_SIZE) continue;
            fill(&s, buf, len);
            if (log_slot != i || below(&s, 4) == 0) {
                if (log_fd >= 0) close(log_fd);
                log_fd = open_or_die(path, O_WRONLY | O_APPEND);
                log_slot = i;
            }
            write_all(log_fd, buf, len, 0, 1, path);
            model_write(id, n->size, buf, len);
        } else if (kind < 44) {  // truncate down or up
            size_t size = below(&s, 2) ? below(&s, n->size + 1) : n->size + below(&s, 100000);
            if (size > MAX_SIZE) continue;
            if (truncate(path, size) != 0) die("truncate %s: %s", path, strerror(errno));
            if (size < n->size) n->size = size; else resize(n, size);
        } else if (kind < 54) {  // a write through a shared mapping
            if (n->size == 0) continue;
            off = below(&s, n->size);
            if (len > n->size - off) len = n->size - off;
            fill(&s, buf, len);
            int fd = open_or_die(path, O_RDWR);
            unsigned char *map = mmap(NULL, n->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            if (map == MAP_FAILED) die("mmap %s: %s", path, strerror(errno));
            memcpy(map + off, buf, len);
            if (below(&s, 2) && msync(map, n->size, MS_SYNC) != 0) die("msync %s: %s", path, strerror(errno));
            munmap(map, n->size);
            close(fd);
            model_write(id, off, buf, len);
        } else if (kind < 62) {  // O_TRUNC rewrite
            len = below(&s, 30000);
            fill(&s, buf, len);
            int fd = open_or_die(path, O_WRONLY | O_TRUNC);
            write_all(fd, buf, len, 0, 0, path);
            close(fd);
            n->size = 0;
            model_write(id, 0, buf, len);
        } else if (kind < 70) {  // overwrite inside the file
            if (n->size == 0) continue;
            off = below(&s, n->size);
            if (len > n->size - off) len = n->size - off;
            fill(&s, buf, len);
            int fd = open_or_die(path, O_RDWR);
            write_all(fd, buf, len, off, 0, path);
            close(fd);
            model_write(id, off, buf, len);
        } else if (kind < 76) {  // a sparse write far past the end
            off = n->size + 65536 + below(&s, 300000);
            if (off + len > MAX_SIZE) continue;
            fill(&s, buf, len);
            int fd = open_or_die(path, O_WRONLY);
            write_all(fd, buf, len, off, 0, path);
            close(fd);
            model_write(id, off, buf, len);
        } else if (kind < 82) {  // rename over another name of ours (or to a free one)
            int j = below(&s, SLOTS);
            if (j == i || slot[j] == id) continue;  // rename between links of one file does nothing
            slot_name(other, t, j);
            if (rename(path, other) != 0) die("rename %s %s: %s", path, other, strerror(errno));
            if (log_slot == i || log_slot == j) { close(log_fd); log_fd = -1; log_slot = -1; }
            slot[j] = id;
            slot[i] = -1;
        } else if (kind < 87) {  // link to a free link name
            int j = NAMES + below(&s, LINKS);
            if (slot[j] >= 0) continue;
            slot_name(other, t, j);
            if (link(path, other) != 0) die("link %s %s: %s", path, other, strerror(errno));
            slot[j] = id;
        } else if (kind < 93) {  // unlink a name (a link, or the file itself)
            int j = below(&s, 2) ? i : NAMES + below(&s, LINKS);
            if (slot[j] < 0) continue;
            slot_name(other, t, j);
            if (unlink(other) != 0) die("unlink %s: %s", other, strerror(errno));
            if (log_slot == j) { close(log_fd); log_fd = -1; log_slot = -1; }
            slot[j] = -1;
        } else {  // fsync
            int fd = open_or_die(path, O_RDONLY);
            if (fsync(fd) != 0) die("fsync %s: %s", path, strerror(errno));
            close(fd);
        }
    }
    if (log_fd >= 0) close(log_fd);
    free(buf);
    return NULL;
}

// The model on disk: MODEL/manifest ("threads T" then "T I ID" lines) and
// MODEL/ID, the expected content of each inode.
static void save(const char *model) {
    char path[4096];
    snprintf(path, sizeof path, "%s/manifest", model);
    FILE *f = fopen(path, "w");
    if (!f) die("%s: %s", path, strerror(errno));
    fprintf(f, "threads %d\n", threads);
    for (int t = 0; t < threads; t++)
        for (int i = 0; i < SLOTS; i++)
            if (names[t * SLOTS + i] >= 0) fprintf(f, "%d %d %d\n", t, i, names[t * SLOTS + i]);
    fclose(f);
    for (int id = 0; id < inode_count; id++) {
        int named = 0;
        for (int k = 0; k < threads * SLOTS; k++) named |= names[k] == id;
        snprintf(path, sizeof path, "%s/%d", model, id);
        if (!named) { unlink(path); continue; }
        int fd = open_or_die(path, O_CREAT | O_TRUNC | O_WRONLY);
        write_all(fd, inodes[id].data, inodes[id].size, 0, 0, path);
        close(fd);
    }
}

// Loads a saved model; returns 0 when there is none. Inode ids are kept.
static int load(const char *model, int want_threads) {
    char path[4096];
    snprintf(path, sizeof path, "%s/manifest", model);
    FILE *f = fopen(path, "r");
    if (!f) {
        if (want_threads <= 0) die("no model in %s", model);
        threads = want_threads;
        names = malloc(sizeof(int) * threads * SLOTS);
        for (int k = 0; k < threads * SLOTS; k++) names[k] = -1;
        return 0;
    }
    if (fscanf(f, "threads %d\n", &threads) != 1 || threads <= 0) die("%s: bad header", path);
    if (want_threads > 0 && want_threads != threads) die("%s: saved with %d threads, not %d", path, threads, want_threads);
    names = malloc(sizeof(int) * threads * SLOTS);
    for (int k = 0; k < threads * SLOTS; k++) names[k] = -1;
    int t, i, id;
    while (fscanf(f, "%d %d %d\n", &t, &i, &id) == 3) {
        if (t < 0 || t >= threads || i < 0 || i >= SLOTS || id < 0 || id >= MAX_INODES) die("%s: bad line", path);
        names[t * SLOTS + i] = id;
        if (id >= inode_count) inode_count = id + 1;
    }
    fclose(f);
    for (id = 0; id < inode_count; id++) {
        int named = 0;
        for (int k = 0; k < threads * SLOTS; k++) named |= names[k] == id;
        if (!named) continue;
        snprintf(path, sizeof path, "%s/%d", model, id);
        int fd = open_or_die(path, O_RDONLY);
        struct stat st;
        fstat(fd, &st);
        resize(&inodes[id], st.st_size);
        if (read(fd, inodes[id].data, st.st_size) != st.st_size) die("%s: short read", path);
        inodes[id].used = 1;
        close(fd);
    }
    return 1;
}

static int direct;

// Reads a whole file through the mount; NULL with errno set on failure.
// With O_DIRECT the buffer and each read are page aligned.
static unsigned char *slurp(const char *path, size_t *size) {
    int fd = open(path, O_RDONLY | (direct ? O_DIRECT : 0));
    if (fd < 0) return NULL;
    size_t cap = 4 << 20, used = 0;
    unsigned char *data;
    if (posix_memalign((void **)&data, 4096, cap) != 0) die("out of memory");
    for (;;) {
        if (used == cap) {
            unsigned char *bigger;
            if (posix_memalign((void **)&bigger, 4096, cap * 2) != 0) die("out of memory");
            memcpy(bigger, data, used);
            free(data);
            data = bigger;
            cap *= 2;
        }
        ssize_t n = read(fd, data + used, cap - used);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) { int e = errno; free(data); close(fd); errno = e; return NULL; }
        if (n == 0) break;
        used += n;
    }
    close(fd);
    *size = used;
    return data;
}

static int check(void) {
    int bad = 0, files = 0;
    char path[4096];
    ino_t *seen = calloc(inode_count + 1, sizeof(ino_t));
    for (int t = 0; t < threads; t++) {
        for (int i = 0; i < SLOTS; i++) {
            int id = names[t * SLOTS + i];
            slot_name(path, t, i);
            struct stat st;
            if (id < 0) {
                if (lstat(path, &st) == 0) { printf("  %s: exists, the model has no such name\n", path); bad++; }
                continue;
            }
            files++;
            if (lstat(path, &st) != 0) { printf("  %s: %s\n", path, strerror(errno)); bad++; continue; }
            size_t size;
            unsigned char *data = slurp(path, &size);
            struct inode *n = &inodes[id];
            if (!data) { printf("  %s: read: %s\n", path, strerror(errno)); bad++; continue; }
            if (size != n->size || memcmp(data, n->data, size) != 0) {
                size_t at = 0;
                while (at < size && at < n->size && data[at] == n->data[at]) at++;
                printf("  %s: %zu bytes, the model has %zu; first difference at byte %zu\n", path, size, n->size, at);
                bad++;
            } else if ((size_t)st.st_size != n->size) {
                printf("  %s: stat says %lld bytes, the model %zu\n", path, (long long)st.st_size, n->size);
                bad++;
            }
            free(data);
            if ((int)st.st_nlink != links_of(t, id)) {
                printf("  %s: %d links, the model has %d\n", path, (int)st.st_nlink, links_of(t, id));
                bad++;
            }
            if (seen[id] && seen[id] != st.st_ino) { printf("  %s: not the same inode as its other names\n", path); bad++; }
            seen[id] = st.st_ino;
        }
    }
    printf("checked %d names: %d differ\n", files, bad);
    free(seen);
    return bad == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc == 7 && strcmp(argv[1], "run") == 0) {
        dir = argv[2];
        uint64_t seed = strtoull(argv[4], NULL, 10);
        long ops = atol(argv[5]);
        load(argv[3], atoi(argv[6]));
        printf("fsmodel run: seed %llu, %ld operations on each of %d threads\n", (unsigned long long)seed, ops, threads);
        pthread_t tid[64];
        struct worker w[64];
        if (threads > 64) die("at most 64 threads");
        for (int t = 0; t < threads; t++) {
            w[t] = (struct worker){ t, seed * 7919 + t, ops };
            pthread_create(&tid[t], NULL, work, &w[t]);
        }
        for (int t = 0; t < threads; t++) pthread_join(tid[t], NULL);
        save(argv[3]);
        return 0;
    }
    if ((argc == 4 || (argc == 5 && strcmp(argv[4], "direct") == 0)) && strcmp(argv[1], "check") == 0) {
        dir = argv[2];
        direct = argc == 5;
        load(argv[3], 0);
        return check();
    }
    fprintf(stderr, "usage: fsmodel run DIR MODEL SEED OPS THREADS | fsmodel check DIR MODEL [direct]\n");
    return 2;
}
