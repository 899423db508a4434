// Makes the kernel hold many inodes of a mount, for the upgrade tests and
// benchmarks: N files in DIR (made if missing, 1,000 per subdirectory),
// each either held open (mode "open", each file holding its own line of
// text) or only looked up by stat (mode "stat", empty files). Then it answers commands on stdin, one per line:
//   check  every file: stat by path finds the inode it had; with "open",
//          each fd reads its own file's text, takes a write at offset 64
//          and reads it back. Prints "ok N" or "bad: ..." for the first fault.
//   quit   closes everything and exits.
// It prints "ready N" once every file is held.
// Usage: hold DIR N open|stat
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static char path[4096];

static const char *file_path(const char *dir, long i) {
    snprintf(path, sizeof path, "%s/d%ld/f%ld", dir, i / 1000, i);
    return path;
}

static int text(long i, char *buf) { return snprintf(buf, 64, "file %ld\n", i); }

int main(int argc, char **argv) {
    if (argc != 4 || (strcmp(argv[3], "open") && strcmp(argv[3], "stat"))) {
        fprintf(stderr, "usage: %s DIR N open|stat\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    long n = atol(argv[2]);
    int opened = strcmp(argv[3], "open") == 0;
    struct rlimit limit = { (rlim_t)n + 64, (rlim_t)n + 64 };
    if (opened && setrlimit(RLIMIT_NOFILE, &limit) != 0) { perror("setrlimit"); return 1; }
    int *fds = calloc(n, sizeof *fds);
    ino_t *inos = calloc(n, sizeof *inos);
    char buf[64], back[64];
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) { perror(dir); return 1; }
    for (long i = 0; i < n; i++) {
        if (i % 1000 == 0) {
            snprintf(path, sizeof path, "%s/d%ld", dir, i / 1000);
            if (mkdir(path, 0755) != 0 && errno != EEXIST) { perror(path); return 1; }
        }
        struct stat st;
        if (stat(file_path(dir, i), &st) != 0) {
            int fd = open(path, O_CREAT | O_WRONLY, 0644);
            int len = opened ? text(i, buf) : 0;
            if (fd < 0 || write(fd, buf, len) != len || close(fd) != 0 || stat(path, &st) != 0) { perror(path); return 1; }
        }
        inos[i] = st.st_ino;
        fds[i] = -1;
        if (opened && (fds[i] = open(path, O_RDWR)) < 0) { perror(path); return 1; }
    }
    printf("ready %ld\n", n);
    fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        if (strncmp(line, "quit", 4) == 0) break;
        if (strncmp(line, "check", 5) != 0) continue;
        const char *bad = NULL;
        long i;
        for (i = 0; i < n && !bad; i++) {
            struct stat st;
            int len = text(i, buf);
            if (stat(file_path(dir, i), &st) != 0) bad = "stat by path failed";
            else if (st.st_ino != inos[i]) bad = "the path names another inode";
            else if (fds[i] >= 0) {
                if (pread(fds[i], back, len, 0) != len || memcmp(buf, back, len) != 0) bad = "the fd reads another file";
                else if (pwrite(fds[i], buf, len, 64) != len) bad = "the fd takes no write";
                else if (pread(fds[i], back, len, 64) != len || memcmp(buf, back, len) != 0) bad = "the write does not read back";
            }
        }
        if (bad) printf("bad: file %ld: %s (%s)\n", i - 1, bad, strerror(errno));
        else printf("ok %ld\n", n);
        fflush(stdout);
    }
    for (long i = 0; i < n; i++) if (fds[i] >= 0) close(fds[i]);
    return 0;
}
