/*
 * pool_check.c — the worker pool (pool.h) on its own (tests/test_pool.py builds and runs it,
 * also under ThreadSanitizer).
 *
 *   pool_check
 *
 * 1. Every share of every job runs exactly once, for 1 to 4 threads, over many short jobs.
 * 2. A job never waits for a worker that has not claimed a share: with every worker parked
 *    in a signal handler (as if descheduled), jobs still complete, all their shares run by
 *    the caller. With a pool that gives each thread a fixed share, this hangs.
 * 3. Released, the workers take shares again.
 * Prints "ok" and exits 0 when all hold.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "pool.h"

#define MAX_SHARES 4

typedef struct job {
    int runs[MAX_SHARES];          /* times share i ran (each share has its own slot) */
    pthread_t by[MAX_SHARES];      /* thread that ran share i */
    int n_seen[MAX_SHARES];        /* n as share i saw it */
} job;

static void share(void *arg, int i, int n) {
    job *j = arg;
    j->runs[i]++;
    j->by[i] = pthread_self();
    j->n_seen[i] = n;
    volatile unsigned sink = 0;
    for (unsigned k = 0; k < 200u * (unsigned)(i + 1); k++) sink += k;   /* a little work */
}

/* A share that sleeps 100 µs: the caller cannot run the whole job before a woken worker gets
 * a core, however loaded the machine (the checks below wait for workers to show up). */
static void slow_share(void *arg, int i, int n) {
    const struct timespec t = {0, 100000};
    nanosleep(&t, NULL);
    share(arg, i, n);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* How long a check waits for workers to take shares before it fails. */
#define WORKER_WAIT_S 15.0

static int fail(const char *what, int threads, int round) {
    printf("FAIL: %s (threads %d, job %d)\n", what, threads, round);
    return 1;
}

/* Check 1 on a pool of `threads`: `jobs` jobs, every share exactly once. */
static int exactly_once(int threads, int jobs) {
    pool *p = pool_new(threads);
    if (!p) return fail("pool_new", threads, 0);
    for (int r = 0; r < jobs; r++) {
        job j;
        memset(&j, 0, sizeof j);
        pool_run(p, share, &j);
        for (int i = 0; i < threads; i++) {
            if (j.runs[i] != 1) return fail("a share did not run exactly once", threads, r);
            if (j.n_seen[i] != threads) return fail("a share was told a wrong n", threads, r);
        }
    }
    pool_free(p);
    return 0;
}

/* Workers park here (SIGUSR1) until released. */
static atomic_int parked, release_workers;

static void park(int sig) {
    (void)sig;
    atomic_fetch_add(&parked, 1);
    const struct timespec ms = {0, 1000000};
    while (!atomic_load(&release_workers)) nanosleep(&ms, NULL);
}

/* Checks 2 and 3 on a pool of `threads`. */
static int parked_workers(int threads) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = park;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGUSR1, &sa, NULL) != 0) return fail("sigaction", threads, 0);
    pool *p = pool_new(threads);
    if (!p) return fail("pool_new", threads, 0);
    /* find the workers' thread ids: run jobs until every share index was run by a worker */
    pthread_t workers[MAX_SHARES];
    int n_workers = 0;
    const pthread_t self = pthread_self();
    const double t0 = now_s();
    for (int r = 0; n_workers < threads - 1 && now_s() - t0 < WORKER_WAIT_S; r++) {
        job j;
        memset(&j, 0, sizeof j);
        pool_run(p, slow_share, &j);
        for (int i = 0; i < threads; i++) {
            if (pthread_equal(j.by[i], self)) continue;
            int known = 0;
            for (int w = 0; w < n_workers; w++) known |= pthread_equal(workers[w], j.by[i]);
            if (!known) workers[n_workers++] = j.by[i];
        }
    }
    if (n_workers != threads - 1) return fail("not every worker took a share", threads, 0);
    /* Park the workers while jobs keep coming, so that each is spinning or running a share
     * when the signal lands, never inside the pool's mutex (on its way to sleep), where a
     * parked worker would block the caller's next publish: a test artifact, since a
     * descheduled thread does run again. */
    atomic_store(&parked, 0);
    atomic_store(&release_workers, 0);
    for (int r = 0; r < 1000; r++) {
        job j;
        memset(&j, 0, sizeof j);
        pool_run(p, share, &j);
    }
    for (int w = 0; w < n_workers; w++)
        if (pthread_kill(workers[w], SIGUSR1) != 0) return fail("pthread_kill", threads, 0);
    while (atomic_load(&parked) != n_workers) {
        job j;
        memset(&j, 0, sizeof j);
        pool_run(p, share, &j);
        for (int i = 0; i < threads; i++)
            if (j.runs[i] != 1) return fail("a share did not run exactly once (parking)", threads, 0);
    }
    for (int r = 0; r < 1000; r++) {
        job j;
        memset(&j, 0, sizeof j);
        pool_run(p, share, &j);   /* hangs if a job waits for a parked worker */
        for (int i = 0; i < threads; i++) {
            if (j.runs[i] != 1) return fail("a share did not run exactly once (parked)", threads, r);
            if (!pthread_equal(j.by[i], self)) return fail("a parked worker ran a share", threads, r);
        }
    }
    atomic_store(&release_workers, 1);
    int worker_ran = 0;
    const double t1 = now_s();
    for (int r = 0; !worker_ran && now_s() - t1 < WORKER_WAIT_S; r++) {
        job j;
        memset(&j, 0, sizeof j);
        pool_run(p, slow_share, &j);
        for (int i = 0; i < threads; i++) {
            if (j.runs[i] != 1) return fail("a share did not run exactly once (released)", threads, r);
            worker_ran |= !pthread_equal(j.by[i], self);
        }
    }
    if (!worker_ran) return fail("no released worker took a share again", threads, 0);
    pool_free(p);
    return 0;
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    for (int threads = 1; threads <= MAX_SHARES; threads++)
        if (exactly_once(threads, 20000)) return 1;
    for (int threads = 2; threads <= MAX_SHARES; threads++)
        if (parked_workers(threads)) return 1;
    printf("ok\n");
    return 0;
}
