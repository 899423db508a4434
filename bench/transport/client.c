/*
 * Client for the transport probe. Usage:
 *   client stat PATH N      stat(PATH) N times
 *   client fstat PATH N     open PATH once, fstat N times
 *   client create DIR N     create N empty files DIR/c<i> (open O_CREAT|O_EXCL
 *                           + close), then unlink them all
 *   client fstatlat PATH N  fstat N times, timing each call: prints
 *                           "fstatlat-pXX <us>" for p10 p50 p90 p99
 * Prints "<phase> <ops> <seconds> <ops/s> <us/op>" per phase.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void report(const char *phase, long n, double s)
{
	printf("%s %ld %.4f %.0f %.2f\n", phase, n, s, n / s, s * 1e6 / n);
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: client stat|fstat|create PATH N\n");
		return 1;
	}
	const char *mode = argv[1], *path = argv[2];
	long n = atol(argv[3]);
	struct stat st;
	if (strcmp(mode, "stat") == 0) {
		double t = now();
		for (long i = 0; i < n; i++)
			if (stat(path, &st) < 0) { perror("stat"); return 1; }
		report("stat", n, now() - t);
	} else if (strcmp(mode, "fstat") == 0) {
		int fd = open(path, O_RDONLY);
		if (fd < 0) { perror("open"); return 1; }
		double t = now();
		for (long i = 0; i < n; i++)
			if (fstat(fd, &st) < 0) { perror("fstat"); return 1; }
		report("fstat", n, now() - t);
		close(fd);
	} else if (strcmp(mode, "fstatlat") == 0) {
		int fd = open(path, O_RDONLY);
		if (fd < 0) { perror("open"); return 1; }
		double *lat = malloc(n * sizeof *lat);
		double t = now();
		for (long i = 0; i < n; i++) {
			double a = now();
			if (fstat(fd, &st) < 0) { perror("fstat"); return 1; }
			lat[i] = now() - a;
		}
		report("fstatlat", n, now() - t);
		qsort(lat, n, sizeof *lat, cmp);
		int pct[] = { 10, 50, 90, 99 };
		for (int i = 0; i < 4; i++)
			printf("fstatlat-p%d 1 0 0 %.2f\n", pct[i],
			       lat[n * pct[i] / 100] * 1e6);
		close(fd);
	} else if (strcmp(mode, "create") == 0) {
		char name[4096];
		double t0 = now();
		for (long i = 0; i < n; i++) {
			snprintf(name, sizeof name, "%s/c%ld", path, i);
			int fd = open(name, O_CREAT | O_EXCL | O_WRONLY, 0644);
			if (fd < 0) { perror(name); return 1; }
			close(fd);
		}
		double t1 = now();
		for (long i = 0; i < n; i++) {
			snprintf(name, sizeof name, "%s/c%ld", path, i);
			if (unlink(name) < 0) { perror(name); return 1; }
		}
		double t2 = now();
		report("create", n, t1 - t0);
		report("unlink", n, t2 - t1);
		report("create+unlink", 2 * n, t2 - t0);
	} else {
		fprintf(stderr, "unknown mode %s\n", mode);
		return 1;
	}
	return 0;
}
