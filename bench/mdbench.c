/*
 * Metadata benchmark for bench/run.sh: create, stat and unlink N empty files
 * with T threads. Thread t works in its own directory DIR/t<t> (made before
 * timing) on N/T files named f0000000, f0000001, ...; all threads start each
 * phase together (barrier) and a phase's time runs from the barrier to the
 * last thread finishing it. No sync: these are the rates of the calls.
 *
 * Usage: mdbench DIR NFILES NTHREADS
 * Prints one line per phase: "<phase> <files> <seconds> <files/s>".
 * Exit status 1 on any failed call (the first failure is printed).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { CREATE, STAT, UNLINK, PHASES };
static const char *phase_names[PHASES] = { "create", "stat", "unlink" };

static const char *root;
static long files_per_thread;
static int threads;
static pthread_barrier_t start_barrier, end_barrier;
static volatile int failed;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void fail(const char *what, const char *name)
{
	if (!__sync_lock_test_and_set(&failed, 1))
		fprintf(stderr, "mdbench: %s %s: %s\n", what, name, strerror(errno));
}

static void *worker(void *arg)
{
	long t = (long)arg;
	char path[4096], name[32];
	snprintf(path, sizeof path, "%s/t%ld", root, t);
	if (mkdir(path, 0755) != 0 && errno != EEXIST)
		fail("mkdir", path);
	int dir = open(path, O_RDONLY | O_DIRECTORY);
	if (dir < 0)
		fail("open", path);

	for (int phase = 0; phase < PHASES; phase++) {
		pthread_barrier_wait(&start_barrier);
		for (long i = 0; i < files_per_thread && !failed && dir >= 0; i++) {
			snprintf(name, sizeof name, "f%07ld", i);
			struct stat st;
			switch (phase) {
			case CREATE: {
				int fd = openat(dir, name, O_CREAT | O_EXCL | O_WRONLY, 0644);
				if (fd < 0 || close(fd) != 0)
					fail("create", name);
				break;
			}
			case STAT:
				if (fstatat(dir, name, &st, 0) != 0)
					fail("stat", name);
				break;
			case UNLINK:
				if (unlinkat(dir, name, 0) != 0)
					fail("unlink", name);
				break;
			}
		}
		pthread_barrier_wait(&end_barrier);
	}
	if (dir >= 0)
		close(dir);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s DIR NFILES NTHREADS\n", argv[0]);
		return 2;
	}
	root = argv[1];
	long nfiles = atol(argv[2]);
	threads = atoi(argv[3]);
	if (nfiles <= 0 || threads <= 0 || nfiles % threads != 0) {
		fprintf(stderr, "mdbench: NFILES must be a positive multiple of NTHREADS\n");
		return 2;
	}
	files_per_thread = nfiles / threads;
	pthread_barrier_init(&start_barrier, NULL, threads + 1);
	pthread_barrier_init(&end_barrier, NULL, threads + 1);

	pthread_t *tids = calloc(threads, sizeof *tids);
	for (long t = 0; t < threads; t++)
		if (pthread_create(&tids[t], NULL, worker, (void *)t) != 0) {
			perror("pthread_create");
			return 1;
		}
	for (int phase = 0; phase < PHASES; phase++) {
		double start = now();
		pthread_barrier_wait(&start_barrier);
		pthread_barrier_wait(&end_barrier);
		double seconds = now() - start;
		if (failed)
			continue; /* the workers skip the rest; keep meeting them at the barriers */
		printf("%s %ld %.6f %.1f\n", phase_names[phase], nfiles, seconds, nfiles / seconds);
		fflush(stdout);
	}
	for (int t = 0; t < threads; t++)
		pthread_join(tids[t], NULL);
	return failed ? 1 : 0;
}
