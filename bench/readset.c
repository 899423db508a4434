// Reads each file of a working set once, with the kernel's page cache
// dropped first, and prints files read per second: how fast the file
// system answers from its own (host) cache, or from the disk when cold.
// Usage: readset DIR FILES
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: %s DIR FILES\n", argv[0]); return 2; }
    int files = atoi(argv[2]);
    static char buf[1 << 20], path[4096];
    int drop = open("/proc/sys/vm/drop_caches", O_WRONLY);
    if (drop >= 0) { sync(); if (write(drop, "3\n", 2) < 0) perror("drop_caches"); close(drop); }
    double start = now();
    for (int i = 0; i < files; i++) {
        snprintf(path, sizeof path, "%s/f%d", argv[1], i);
        int fd = open(path, O_RDONLY);
        if (fd < 0) { perror(path); return 1; }
        while (read(fd, buf, sizeof buf) > 0) {}
        close(fd);
    }
    printf("%.0f\n", files / (now() - start));
    return 0;
}
