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

#endif
