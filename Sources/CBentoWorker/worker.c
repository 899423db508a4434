#define _GNU_SOURCE
#include "CBentoWorker.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/socket.h>

int bento_set_parent_death_signal(int signal) { return prctl(PR_SET_PDEATHSIG, signal, 0, 0, 0); }

// A deny list, not an allow list: the Swift runtime, libfuse and the
// modules use more of the kernel than is worth naming, and what matters is
// that a faulty or hostile module cannot reach past its own mount.
static const char *const denied[] = {
    "mount", "umount2", "pivot_root", "chroot", "move_mount", "fsopen", "fsmount", "fsconfig", "open_tree",
    "mount_setattr", "swapon", "swapoff", "reboot", "kexec_load", "kexec_file_load", "init_module",
    "finit_module", "delete_module", "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "bpf",
    "perf_event_open", "setns", "unshare", "keyctl", "add_key", "request_key", "acct", "settimeofday",
    "clock_settime", "adjtimex", "clock_adjtime", "sethostname", "setdomainname", "iopl", "ioperm",
    "quotactl", "userfaultfd", "open_by_handle_at", "name_to_handle_at", "fanotify_init", "execve",
    "execveat", "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups",
    "setfsuid", "setfsgid", "capset", "mknod", "mknodat",
};

int bento_confine_worker(void) {
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -errno;
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (ctx == NULL) return -ENOMEM;
    int rc = 0;
    for (size_t i = 0; i < sizeof denied / sizeof denied[0] && rc == 0; i++) {
        int nr = seccomp_syscall_resolve_name(denied[i]);
        if (nr != __NR_SCMP_ERROR) rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
    }
    // Sockets: AF_UNIX only (the journal). clone3's flags sit in memory, out
    // of the filter's reach: ENOSYS makes glibc fall back to clone, whose
    // namespace flags are refused here.
    if (rc == 0) rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_NE, AF_UNIX));
    if (rc == 0) rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
    static const unsigned long namespaces[] = { 0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000 };
    for (size_t i = 0; i < sizeof namespaces / sizeof namespaces[0] && rc == 0; i++)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                              SCMP_A0(SCMP_CMP_MASKED_EQ, namespaces[i], namespaces[i]));
    if (rc == 0) rc = seccomp_load(ctx);
    seccomp_release(ctx);
    return rc;
}

int bento_spawn(const char *path, char *const argv[], char *const envp[], const int *sources, const int *targets, int count) {
    // Copies above every target first, so no dup2 lands on a descriptor
    // another one still has to be copied from.
    int high[32];
    if (count > 32) return -EINVAL;
    for (int i = 0; i < count; i++) {
        high[i] = fcntl(sources[i], F_DUPFD_CLOEXEC, 64);
        if (high[i] < 0) { int e = errno; while (i-- > 0) close(high[i]); return -e; }
    }
    pid_t pid = fork();
    if (pid == 0) {
        // The child: only async-signal-safe calls until exec.
        for (int i = 0; i < count; i++) if (dup2(high[i], targets[i]) < 0) _exit(127);
        int top = 0;
        for (int i = 0; i < count; i++) if (targets[i] > top) top = targets[i];
        close_range((unsigned)top + 1, ~0U, 0);
        sigset_t none;
        sigemptyset(&none);
        for (int signal = 1; signal < NSIG; signal++) {
            if (signal == SIGKILL || signal == SIGSTOP) continue;
            struct sigaction dfl;
            memset(&dfl, 0, sizeof dfl);
            dfl.sa_handler = SIG_DFL;
            sigaction(signal, &dfl, NULL);
        }
        sigprocmask(SIG_SETMASK, &none, NULL);
        execve(path, argv, envp);
        _exit(127);
    }
    int e = errno;
    for (int i = 0; i < count; i++) close(high[i]);
    return pid < 0 ? -e : pid;
}
