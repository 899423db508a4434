#define _GNU_SOURCE
#include "CFlightRecorder.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static struct bento_recorder *shared;
static __thread struct bento_recorder_slot *mine;
static __thread int thread_id;

int bento_thread_id(void) {
    if (!thread_id) thread_id = (int)syscall(SYS_gettid);
    return thread_id;
}
static pthread_key_t exit_key;
static pthread_once_t exit_key_once = PTHREAD_ONCE_INIT;

int bento_recorder_create(void) {
    int fd = (int)syscall(SYS_memfd_create, "bento-recorder", 1U /* MFD_CLOEXEC */);
    if (fd < 0) return -1;
    if (ftruncate(fd, sizeof(struct bento_recorder)) != 0) { close(fd); return -1; }
    struct bento_recorder *r = bento_recorder_map(fd);
    if (r == NULL) { close(fd); return -1; }
    r->slot_count = BENTO_RECORDER_SLOTS;
    __atomic_store_n(&r->magic, BENTO_RECORDER_MAGIC, __ATOMIC_RELEASE);
    munmap(r, sizeof *r);
    return fd;
}

struct bento_recorder *bento_recorder_map(int fd) {
    void *p = mmap(NULL, sizeof(struct bento_recorder), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    return p == MAP_FAILED ? NULL : p;
}

void bento_recorder_clear(struct bento_recorder *r) {
    for (int i = 0; i < BENTO_RECORDER_SLOTS; i++) {
        struct bento_recorder_slot *s = &r->slots[i];
        __atomic_store_n(&s->unique, 0, __ATOMIC_RELEASE);
        s->fault = 0;
        __atomic_store_n(&s->owner, 0, __ATOMIC_RELEASE);
    }
}

struct bento_recorder_slot bento_recorder_read(const struct bento_recorder *r, int i) {
    struct bento_recorder_slot copy;
    memset(&copy, 0, sizeof copy);
    uint64_t unique = __atomic_load_n(&r->slots[i].unique, __ATOMIC_ACQUIRE);
    if (unique == 0) return copy;
    copy = r->slots[i];
    copy.unique = unique;
    if (copy.name_length > BENTO_RECORDER_NAME) copy.name_length = BENTO_RECORDER_NAME;
    return copy;
}

void bento_recorder_mark(struct bento_recorder *r, int i, int32_t fault) { r->slots[i].fault = fault; }

void bento_recorder_use(struct bento_recorder *recorder) { shared = recorder; }

// A thread that ends gives its slot back.
static void release_slot(void *slot) {
    struct bento_recorder_slot *s = slot;
    __atomic_store_n(&s->unique, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&s->owner, 0, __ATOMIC_RELEASE);
}
static void make_exit_key(void) { pthread_key_create(&exit_key, release_slot); }

// Each request thread claims a slot the first time, and gets a signal
// stack of its own so that a stack overflow in module code still reaches
// the fault handler.
static struct bento_recorder_slot *slot(void) {
    if (mine || !shared) return mine;
    uint64_t self = (uint64_t)bento_thread_id();
    for (int i = 0; i < BENTO_RECORDER_SLOTS; i++) {
        uint64_t free_owner = 0;
        if (__atomic_compare_exchange_n(&shared->slots[i].owner, &free_owner, self, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
            mine = &shared->slots[i];
            pthread_once(&exit_key_once, make_exit_key);
            pthread_setspecific(exit_key, mine);
            stack_t stack = { .ss_sp = malloc(65536), .ss_size = 65536, .ss_flags = 0 };
            if (stack.ss_sp) sigaltstack(&stack, NULL);
            return mine;
        }
    }
    return NULL;  // more threads than slots: this one goes unrecorded
}

void bento_recorder_idle(void) {
    struct bento_recorder_slot *s = slot();
    if (s) __atomic_store_n(&s->unique, 0, __ATOMIC_RELEASE);
}

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

// FUSE opcodes whose request carries a name, and where it starts after
// the 40-byte header (the fixed part of each opcode's argument).
static long name_offset(uint32_t opcode) {
    switch (opcode) {
    case 1: case 10: case 11: case 6: return 0;   // LOOKUP, UNLINK, RMDIR, SYMLINK (name first)
    case 8: return 16;                            // MKNOD: fuse_mknod_in
    case 9: return 8;                             // MKDIR: fuse_mkdir_in
    case 12: return 8;                            // RENAME: fuse_rename_in
    case 45: return 16;                           // RENAME2: fuse_rename2_in
    case 13: return 8;                            // LINK: fuse_link_in
    case 35: return 16;                           // CREATE: fuse_create_in
    case 22: return 8;                            // GETXATTR: fuse_getxattr_in
    case 24: return 0;                            // REMOVEXATTR: the attribute's name
    default: return -1;
    }
}

void bento_recorder_note(const void *buffer, size_t length) {
    struct bento_recorder_slot *s = slot();
    if (!s || length < 40) return;
    const unsigned char *b = buffer;
    uint32_t opcode;
    uint64_t unique, nodeid;
    memcpy(&opcode, b + 4, 4);
    memcpy(&unique, b + 8, 8);
    memcpy(&nodeid, b + 16, 8);
    s->opcode = opcode;
    s->nodeid = nodeid;
    s->fault = 0;
    s->started_ns = now_ns();
    s->name_length = 0;
    long at = name_offset(opcode);
    if (at >= 0 && (size_t)(40 + at) < length) {
        const char *name = (const char *)b + 40 + at;
        size_t n = strnlen(name, length - 40 - (size_t)at);
        if (n > BENTO_RECORDER_NAME) n = BENTO_RECORDER_NAME;
        memcpy(s->name, name, n);
        s->name_length = (uint32_t)n;
    }
    // Published last: the supervisor reads a slot only when unique is set.
    __atomic_store_n(&s->unique, unique & ~(1ULL << 63), __ATOMIC_RELEASE);
}

static void on_fault(int signal) {
    struct bento_recorder_slot *s = mine;
    if (s && __atomic_load_n(&s->unique, __ATOMIC_ACQUIRE) != 0) s->fault = signal;
    // Die of the same signal: the default action, once this handler returns.
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigaction(signal, &dfl, NULL);
    raise(signal);
}

int bento_recorder_catch_faults(void) {
    static const int faults[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP, SIGSYS };
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_fault;
    action.sa_flags = SA_ONSTACK;
    sigemptyset(&action.sa_mask);
    for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++)
        if (sigaction(faults[i], &action, NULL) != 0) return -1;
    return 0;
}
