/*
 * pool.c — the worker pool of pool.h, on POSIX threads and C11 atomics.
 *
 * A job has n shares, claimed one at a time by whoever comes first: the caller and the
 * workers. `ticket` packs the job's generation (high 32 bits) with the next unclaimed share
 * (low 32 bits), so a claim is one compare-and-swap that can only take a share of the job its
 * claimant saw published. The caller publishes a job by storing a new generation with share 0
 * (release), claims shares until none is left, then waits until every claimed share is done.
 * A worker that sees a new generation (acquire) claims shares the same way.
 *
 * So a job never waits for a worker that has not started it: when the machine has more
 * runnable threads than cores and a worker is descheduled, the caller runs that worker's
 * shares itself instead of waiting a scheduler time slice for it (with a fixed share per
 * thread, a token of ~150 jobs then took 100x longer on 2 threads than on 1). Only a share a
 * worker claimed and is still running is waited for.
 *
 * Waiting is a spin with a pause instruction, for SPIN_ROUNDS rounds; a worker that spun that
 * long without a job sleeps on `wake` (the caller broadcasts under the mutex when anyone
 * sleeps, so no wake-up is lost: a worker re-checks the generation under the mutex before it
 * waits). The caller, waiting for a claimed share past SPIN_ROUNDS, yields the processor to
 * the worker running it.
 */
#define _POSIX_C_SOURCE 200809L

#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
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
    pthread_t thread;
} worker;

struct pool {
    int n;                        /* threads, the caller included; shares per job */
    worker *workers;              /* [n − 1] */
    int started;                  /* workers successfully created */
    pool_fn fn;                   /* the current job (written before its generation is published) */
    void *arg;
    _Atomic uint64_t ticket;      /* generation << 32 | next unclaimed share */
    atomic_int done;              /* shares of the current job finished */
    atomic_int stop;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int sleepers;                 /* workers waiting on wake (under lock) */
};

static uint32_t generation_of(uint64_t ticket) {
    return (uint32_t)(ticket >> 32);
}

/* Claim the next share of job `gen`: its index, or -1 when that job has none left (or is over). */
static int claim(pool *p, uint32_t gen) {
    uint64_t t = atomic_load_explicit(&p->ticket, memory_order_acquire);
    for (;;) {
        if (generation_of(t) != gen || (uint32_t)t >= (uint32_t)p->n) return -1;
        if (atomic_compare_exchange_weak_explicit(&p->ticket, &t, t + 1, memory_order_acquire,
                                                  memory_order_acquire))
            return (int)(uint32_t)t;
    }
}

/* Run the shares of job `gen` this thread can claim. */
static void run_shares(pool *p, uint32_t gen) {
    int i;
    while ((i = claim(p, gen)) >= 0) {
        p->fn(p->arg, i, p->n);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
    }
}

/* Wait until the generation differs from seen; returns the new one. */
static uint32_t wait_for_job(pool *p, uint32_t seen) {
    for (int round = 0; round < SPIN_ROUNDS; round++) {
        uint32_t g = generation_of(atomic_load_explicit(&p->ticket, memory_order_acquire));
        if (g != seen) return g;
        cpu_relax();
    }
    pthread_mutex_lock(&p->lock);
    p->sleepers++;
    uint32_t g;
    while ((g = generation_of(atomic_load_explicit(&p->ticket, memory_order_acquire))) == seen)
        pthread_cond_wait(&p->wake, &p->lock);
    p->sleepers--;
    pthread_mutex_unlock(&p->lock);
    return g;
}

static void *worker_main(void *arg) {
    worker *w = arg;
    pool *p = w->pool;
    uint32_t seen = 0;
    for (;;) {
        seen = wait_for_job(p, seen);
        if (atomic_load_explicit(&p->stop, memory_order_acquire)) return NULL;
        run_shares(p, seen);
    }
}

/* Publish a new job with all its shares unclaimed (fn may be NULL together with stop set). */
static uint32_t publish(pool *p) {
    const uint32_t gen =
        generation_of(atomic_load_explicit(&p->ticket, memory_order_relaxed)) + 1;
    atomic_store_explicit(&p->ticket, (uint64_t)gen << 32, memory_order_release);
    pthread_mutex_lock(&p->lock);
    if (p->sleepers) pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    return gen;
}

pool *pool_new(int n_threads) {
    if (n_threads < 1) return NULL;
    pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n_threads;
    atomic_init(&p->ticket, 0);
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
    run_shares(p, publish(p));
    for (int round = 0; atomic_load_explicit(&p->done, memory_order_acquire) != p->n; round++) {
        if (round < SPIN_ROUNDS) cpu_relax();
        else sched_yield();   /* the worker running a claimed share was descheduled */
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
