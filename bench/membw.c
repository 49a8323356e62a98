/*
 * membw.c — how fast this machine reads memory, per thread count: the ceiling a
 * memory-bound token generation can reach (docs/PERFORMANCE.md quotes it beside every
 * generation figure).
 *
 *   cc -std=c11 -O2 -march=native -pthread bench/membw.c -o membw && ./membw 1 && ./membw 2
 *
 * Each thread sums its own 1 GiB buffer (64-bit adds the compiler vectorizes) 5 times; the
 * figure is bytes read / wall time.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BYTES_PER_THREAD ((size_t)1 << 30)
#define PASSES 5
#define MAX_THREADS 256

static uint64_t *buffers[MAX_THREADS];
static uint64_t sums[MAX_THREADS];

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void *reader(void *arg) {
    const size_t i = (size_t)arg, n = BYTES_PER_THREAD / sizeof(uint64_t);
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (int pass = 0; pass < PASSES; pass++)
        for (size_t k = 0; k < n; k += 4) {
            s0 += buffers[i][k];
            s1 += buffers[i][k + 1];
            s2 += buffers[i][k + 2];
            s3 += buffers[i][k + 3];
        }
    sums[i] = s0 + s1 + s2 + s3;
    return NULL;
}

int main(int argc, char **argv) {
    const int threads = argc > 1 ? atoi(argv[1]) : 1;
    if (threads < 1 || threads > MAX_THREADS) {
        fprintf(stderr, "membw: threads must be in [1, %d]\n", MAX_THREADS);
        return 2;
    }
    for (int i = 0; i < threads; i++) {
        buffers[i] = malloc(BYTES_PER_THREAD);
        if (!buffers[i]) {
            fprintf(stderr, "membw: out of memory\n");
            return 1;
        }
        memset(buffers[i], i + 1, BYTES_PER_THREAD);   /* touch every page before timing */
    }
    pthread_t th[MAX_THREADS];
    const double t = now();
    for (int i = 0; i < threads; i++) pthread_create(&th[i], NULL, reader, (void *)(size_t)i);
    for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
    const double seconds = now() - t;
    uint64_t check = 0;
    for (int i = 0; i < threads; i++) check ^= sums[i];
    printf("%d thread%s: %.1f GB/s (checksum %llx)\n", threads, threads > 1 ? "s" : "",
           (double)PASSES * (double)BYTES_PER_THREAD * threads / seconds / 1e9,
           (unsigned long long)check);
    return 0;
}
