// The few calls of a worker process that Swift cannot make itself: prctl
// is variadic.
#ifndef CBENTOWORKER_H
#define CBENTOWORKER_H

// The worker is killed with `signal` when the thread that started it exits.
int bento_set_parent_death_signal(int signal);
// No new privileges for this process and its children (PR_SET_NO_NEW_PRIVS).
int bento_set_no_new_privileges(void);

#endif
