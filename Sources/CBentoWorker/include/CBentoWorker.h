// The few calls of a worker process that Swift cannot make itself (prctl is
// variadic) or should not (the seccomp filter, with libseccomp).
#ifndef CBENTOWORKER_H
#define CBENTOWORKER_H

// The worker is killed with `signal` when the thread that started it exits.
int bento_set_parent_death_signal(int signal);
// Confines this process and every thread it starts: no new privileges
// (PR_SET_NO_NEW_PRIVS), and a seccomp filter that answers EPERM to what a
// file system module never needs: mounting, tracing, loading kernel code,
// namespaces, executing programs, changing ids, sockets other than AF_UNIX.
// Returns 0, or -errno.
int bento_confine_worker(void);

// Starts `path` with `argv` and `envp`, descriptor sources[i] at number
// targets[i] in the child (every other descriptor closed), all signals
// unblocked and at their defaults. fork and exec, not posix_spawn:
// ThreadSanitizer cannot follow the vfork-style clone posix_spawn makes in
// a threaded process. Returns the child's pid, or -errno.
int bento_spawn(const char *path, char *const argv[], char *const envp[], const int *sources, const int *targets, int count);

#endif
