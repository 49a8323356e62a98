/*
 * pool.h — a fixed set of worker threads that run one function together, many times a token.
 *
 * The forward pass splits each matrix product (and the attention heads) between the calling
 * thread and n − 1 workers created once per context: no thread is created per token. Between
 * jobs the workers spin for a short while (a token issues hundreds of jobs, microseconds apart),
 * then sleep on a condition variable, so an idle context costs no CPU.
 */
#ifndef EDGEMOE_POOL_H
#define EDGEMOE_POOL_H

/* One share of a job: the i-th of n (0 <= i < n). */
typedef void (*pool_fn)(void *arg, int i, int n);

typedef struct pool pool;

/* A pool of n_threads in all (the caller counts as one): NULL if out of memory or threads
 * could not be created. n_threads == 1 makes a pool that runs every job on the caller. */
pool *pool_new(int n_threads);

/* Threads of the pool, the caller included. */
int pool_size(const pool *p);

/* Run fn(arg, i, n) once for every i < n = pool_size(p), each share on whichever thread claims
 * it first (the caller included: it runs every share no worker has claimed, so a descheduled
 * worker delays nobody); return when all are done. A share's scratch must belong to its index
 * i, not to the thread running it. Not reentrant: one job at a time (the context's callers
 * serialize, as every edgemoe_context call must); any thread may be the caller. */
void pool_run(pool *p, pool_fn fn, void *arg);

/* Stop and join the workers, free p (NULL is fine). */
void pool_free(pool *p);

#endif /* EDGEMOE_POOL_H */
