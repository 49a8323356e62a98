/*
 * thread_check.c — drives the threaded parts of the core for ThreadSanitizer
 * (tests/test_sanitizers.py builds it with -fsanitize=thread and runs it).
 *
 *   thread_check MODEL.bin BUDGET_BYTES
 *
 * For each configuration — plain mmap, then a memory budget of BUDGET_BYTES with LFU and
 * LRU, with and without prediction — it opens the model, evaluates a prompt batch and 24
 * single tokens on a 3-thread context (the worker pool), and, under the budget, with 3 I/O
 * threads filling the expert cache and reading ahead. Two contexts of the same model run at
 * once from two threads (the model is shared: its counters and cache are). Exits 0 when every
 * call succeeded; TSan reports races on its own (halt_on_error makes them fatal).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgemoe.h"

typedef struct job {
    edgemoe_model *model;
    int32_t seed;
    int failed;
} job;

static void *run_context(void *arg) {
    job *j = arg;
    char err[256];
    edgemoe_context *ctx = NULL;
    edgemoe_model_info info;
    edgemoe_model_get_info(j->model, &info);
    if (edgemoe_context_new(j->model, 64, 3, &ctx, err, sizeof err) != EDGEMOE_OK) {
        fprintf(stderr, "context: %s\n", err);
        j->failed = 1;
        return NULL;
    }
    float *logits = malloc((size_t)info.n_vocab * sizeof *logits);
    int32_t prompt[16];
    for (int i = 0; i < 16; i++) prompt[i] = (j->seed * 31 + i * 7) % info.n_vocab;
    int rc = edgemoe_context_eval(ctx, prompt, 16, logits, 1);
    for (int i = 0; i < 24 && rc == EDGEMOE_OK; i++) {
        int32_t tok = (int32_t)((j->seed + i * 13) % info.n_vocab);
        rc = edgemoe_context_eval(ctx, &tok, 1, logits, 1);
    }
    if (rc != EDGEMOE_OK) {
        fprintf(stderr, "eval: %s\n", edgemoe_context_error(ctx));
        j->failed = 1;
    }
    free(logits);
    edgemoe_context_free(ctx);
    return NULL;
}

static int check(const char *path, const edgemoe_model_params *params, const char *what) {
    char err[512];
    edgemoe_model *model = NULL;
    if (edgemoe_model_open_params(path, params, &model, err, sizeof err) != EDGEMOE_OK) {
        fprintf(stderr, "%s: open: %s\n", what, err);
        return 1;
    }
    job jobs[2] = {{model, 1, 0}, {model, 2, 0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, run_context, &jobs[i]);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    edgemoe_model_stats st;
    edgemoe_model_get_stats(model, &st);
    edgemoe_model_free(model);
    printf("%s: %llu expert uses, %llu misses\n", what, (unsigned long long)st.expert_uses,
           (unsigned long long)st.misses);
    return jobs[0].failed | jobs[1].failed;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: thread_check MODEL.bin BUDGET_BYTES\n");
        return 2;
    }
    const uint64_t budget = strtoull(argv[2], NULL, 10);
    int failed = check(argv[1], NULL, "plain mmap");
    for (int policy = 0; policy < 2; policy++)
        for (int no_predict = 0; no_predict < 2; no_predict++) {
            edgemoe_model_params p;
            memset(&p, 0, sizeof p);
            p.memory_budget = budget;
            p.policy = policy;
            p.io_threads = 3;
            p.no_predict = no_predict;
            char what[64];
            snprintf(what, sizeof what, "budget %s%s", policy ? "lru" : "lfu",
                     no_predict ? " no-predict" : "");
            failed |= check(argv[1], &p, what);
        }
    printf("%s\n", failed ? "FAILED" : "ok");
    return failed;
}
