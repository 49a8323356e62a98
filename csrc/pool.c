/*
 * pool.c — the worker pool of pool.h, on POSIX threads and C11 atomics.
 *
 * A job is published by bumping `generation` (release); a worker that sees a new generation
 * (acquire) reads fn and arg, runs its share and bumps `done`. The caller runs share 0, then
 * waits for done == n − 1. Waiting is a spin with a pause instruction, for SPIN_ROUNDS rounds;
 * a worker that spun that long without a job sleeps on `wake` (the caller broadcasts under the
 * mutex when anyone sleeps, so no wake-up is lost: a worker re-checks the generation under the
 * mutex before it waits).
 */
#define _POSIX_C_SOURCE 200809L

#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield")
#else
#define cpu_relax() ((void)0)
#endif

#define SPIN_ROUNDS (1 << 16)   /* a few milliseconds of pauses before a worker sleeps */

typedef struct worker {
    pool *pool;
    int index;
    pthread_t thread;
} worker;

struct pool {
    int n;                        /* threads, the caller included */
    worker *workers;              /* [n − 1] */
    int started;                  /* workers successfully created */
    pool_fn fn;                   /* the current job (written before generation is bumped) */
    void *arg;
    atomic_uint generation;       /* bumped once per job */
    atomic_int done;              /* workers finished with the current job */
    atomic_int stop;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int sleepers;                 /* workers waiting on wake (under lock) */
};

/* Wait until the generation differs from seen; returns the new one. */
static unsigned wait_for_job(pool *p, unsigned seen) {
    for (int round = 0; round < SPIN_ROUNDS; round++) {
        unsigned g = atomic_load_explicit(&p->generation, memory_order_acquire);
        if (g != seen) return g;
        cpu_relax();
    }
    pthread_mutex_lock(&p->lock);
    p->sleepers++;
    unsigned g;
    while ((g = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen)
        pthread_cond_wait(&p->wake, &p->lock);
    p->sleepers--;
    pthread_mutex_unlock(&p->lock);
    return g;
}

static void *worker_main(void *arg) {
    worker *w = arg;
    pool *p = w->pool;
    unsigned seen = 0;
    for (;;) {
        seen = wait_for_job(p, seen);
        if (atomic_load_explicit(&p->stop, memory_order_acquire)) return NULL;
        p->fn(p->arg, w->index, p->n);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
    }
}

/* Publish a job (fn may be NULL together with stop set). */
static void publish(pool *p) {
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_mutex_lock(&p->lock);
    if (p->sleepers) pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
}

pool *pool_new(int n_threads) {
    if (n_threads < 1) return NULL;
    pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n_threads;
    atomic_init(&p->generation, 0);
    atomic_init(&p->done, 0);
    atomic_init(&p->stop, 0);
    if (pthread_mutex_init(&p->lock, NULL) != 0) {
        free(p);
        return NULL;
    }
    if (pthread_cond_init(&p->wake, NULL) != 0) {
        pthread_mutex_destroy(&p->lock);
        free(p);
        return NULL;
    }
    if (n_threads > 1) {
        p->workers = calloc((size_t)n_threads - 1, sizeof *p->workers);
        if (!p->workers) {
            pool_free(p);
            return NULL;
        }
        for (int i = 1; i < n_threads; i++) {
            worker *w = &p->workers[i - 1];
            w->pool = p;
            w->index = i;
            if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
                pool_free(p);
                return NULL;
            }
            p->started++;
        }
    }
    return p;
}

int pool_size(const pool *p) {
    return p->n;
}

void pool_run(pool *p, pool_fn fn, void *arg) {
    if (p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    publish(p);
    fn(arg, 0, p->n);
    for (int round = 0; atomic_load_explicit(&p->done, memory_order_acquire) != p->n - 1; round++) {
        if (round < SPIN_ROUNDS) cpu_relax();
        else sched_yield();   /* a worker was descheduled: let it run */
    }
}

void pool_free(pool *p) {
    if (!p) return;
    if (p->started) {
        atomic_store_explicit(&p->stop, 1, memory_order_release);
        publish(p);
        for (int i = 0; i < p->started; i++) pthread_join(p->workers[i].thread, NULL);
    }
    free(p->workers);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    free(p);
}
