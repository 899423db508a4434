// The flight recorder: what each request thread of a worker is doing, in
// shared memory (a memfd the supervisor keeps), so that it outlives the
// worker. A thread's slot holds the request it read and has not finished;
// a fault in module code marks that slot before the process dies. The
// supervisor reads the slots after a death, and while the worker runs (to
// find requests that hang). C, because the fault handler must be
// async-signal-safe and thread-local.
#ifndef CFLIGHTRECORDER_H
#define CFLIGHTRECORDER_H

#include <stddef.h>
#include <stdint.h>

#define BENTO_RECORDER_MAGIC 0x5244434552544e42ULL /* "BNTRECDR" */
#define BENTO_RECORDER_SLOTS 512
#define BENTO_RECORDER_NAME 64
/// `fault` of a request the supervisor found running past the hang limit.
#define BENTO_FAULT_HANG (-1)

struct bento_recorder_slot {
    uint64_t owner;        // the thread using the slot (0: free)
    uint64_t unique;       // the request's id without the resend bit (0: idle)
    uint64_t nodeid;
    uint64_t started_ns;   // CLOCK_MONOTONIC, when read
    uint32_t opcode;
    int32_t fault;         // the signal its thread died of, or BENTO_FAULT_HANG
    uint32_t name_length;
    char name[BENTO_RECORDER_NAME];
};

struct bento_recorder {
    uint64_t magic;
    uint32_t slot_count;
    uint32_t reserved;
    struct bento_recorder_slot slots[BENTO_RECORDER_SLOTS];
};

/// A new recorder in a memfd (close-on-exec); -1 with errno on failure.
int bento_recorder_create(void);
/// Maps the recorder in `fd` (shared, read-write); NULL if it is not one.
struct bento_recorder *bento_recorder_map(int fd);

/// Worker side. Uses the recorder mapped here from now on.
void bento_recorder_use(struct bento_recorder *recorder);
/// Before a request thread reads: it is idle.
void bento_recorder_idle(void);
/// After it read `length` bytes of a request into `buffer`.
void bento_recorder_note(const void *buffer, size_t length);
/// The calling thread's kernel id (gettid), kept per thread.
int bento_thread_id(void);
/// Marks faults of this process in the faulting thread's slot, then lets
/// the signal kill the process as it would have.
int bento_recorder_catch_faults(void);

/// Supervisor side: a copy of slot `i` (its `unique` is 0 when idle), and
/// marking a slot whose request hangs.
struct bento_recorder_slot bento_recorder_read(const struct bento_recorder *recorder, int i);
void bento_recorder_mark(struct bento_recorder *recorder, int i, int32_t fault);
/// Either side: clears every slot (a new worker starts clean).
void bento_recorder_clear(struct bento_recorder *recorder);

#endif
