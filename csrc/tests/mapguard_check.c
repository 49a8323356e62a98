/*
 * mapguard_check.c — a file truncated while mapped: SIGBUS becomes an error, never a crash
 * (tests/test_mapguard.py builds it with the core and runs it).
 *
 *   mapguard_check MODEL.bin WORKDIR
 *
 * First the guard itself (mapguard.h) on a scratch file of three pages cut to one: a read past
 * the end inside a guard returns to it, on the main thread, on another thread and in nested
 * guards; outside any guard, in a guard over other memory, or for a SIGBUS sent by kill, the
 * signal goes on to the handler installed before ours (the default kills the process, a
 * handler of the application's runs). Then the forward pass: for several truncation lengths,
 * a copy of MODEL is opened, cut short, and evaluated past the between-calls check (the batch
 * function directly, so the fault happens inside the call): the call must fail with an error
 * naming the file, and so must the next one. Prints "ok" and exits 0 when all hold.
 */
#define _POSIX_C_SOURCE 200809L

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "context.h"
#include "mapguard.h"

int forward_batch(edgemoe_context *ctx, const int32_t *tokens, int32_t n, int32_t pos,
                  float *logits, int32_t logits_mode);

static int failures;

#define CHECK(cond, ...)                                       \
    do {                                                       \
        if (!(cond)) {                                         \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                      \
            fputc('\n', stderr);                               \
            failures++;                                        \
        }                                                      \
    } while (0)

static size_t page;

/* A scratch file of three pages, mapped, then cut to one: page 2 and 3 fault. */
static const volatile uint8_t *cut_mapping(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/scratch.bin", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, (off_t)(3 * page)) != 0) {
        perror(path);
        exit(2);
    }
    void *p = mmap(NULL, 3 * page, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED || ftruncate(fd, (off_t)page) != 0) {
        perror(path);
        exit(2);
    }
    close(fd);
    return p;
}

/* 1 if reading byte `at` of map faulted inside a guard over [map, map + 3 pages). */
static int guarded_read_faults(const volatile uint8_t *map, size_t at) {
    mapguard g;
    volatile int faulted = 0;
    mapguard_push(&g, (const void *)map, 3 * page);
    if (sigsetjmp(g.env, 0) == 0) (void)map[at];
    else faulted = 1;
    mapguard_leave(&g);
    return faulted;
}

static void *thread_read(void *arg) {
    static int result;
    result = guarded_read_faults(arg, 2 * page + 5);
    return &result;
}

/* Run fn in a child process; returns its wait status. */
static int in_child(void (*fn)(const volatile uint8_t *), const volatile uint8_t *map) {
    pid_t pid = fork();
    if (pid == 0) {
        fn(map);
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
}

static void read_unguarded(const volatile uint8_t *map) {
    (void)map[page + 1];
}

static void read_under_other_guard(const volatile uint8_t *map) {
    static uint8_t other[64];
    mapguard g;
    mapguard_push(&g, other, sizeof other);
    if (sigsetjmp(g.env, 0) == 0) (void)map[page + 1];
    else _exit(3);   /* caught: wrong */
    mapguard_leave(&g);
}

static void kill_inside_guard(const volatile uint8_t *map) {
    mapguard g;
    mapguard_push(&g, (const void *)map, 3 * page);
    if (sigsetjmp(g.env, 0) == 0) raise(SIGBUS);
    else _exit(3);   /* caught: wrong, nothing faulted */
    mapguard_leave(&g);
}

static void on_app_sigbus(int sig) {
    (void)sig;
    _exit(42);
}

/* An application handler installed before edgemoe's: ours must hand it the signal. */
static void app_handler_runs(const volatile uint8_t *map) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_app_sigbus;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, NULL);
    mapguard_install();
    if (guarded_read_faults(map, page + 1) != 1) _exit(4);   /* ours still catches its own */
    (void)map[page + 1];                                     /* not ours: → on_app_sigbus */
}

static void check_guard(const char *dir) {
    const volatile uint8_t *map = cut_mapping(dir);
    /* before this process installs the handler: a child with its own handler first */
    int st = in_child(app_handler_runs, map);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 42, "application handler not reached (status %d)", st);

    CHECK(mapguard_install() == 0, "mapguard_install failed");
    CHECK(guarded_read_faults(map, 0) == 0, "a read inside the file faulted");
    CHECK(guarded_read_faults(map, page) == 1, "read past the end not caught");
    CHECK(guarded_read_faults(map, 3 * page - 1) == 1, "second read past the end not caught");

    /* nested: the inner guard catches its fault, then the outer one its own */
    mapguard outer;
    volatile int outer_faulted = 0, inner_faulted = 0;
    mapguard_push(&outer, (const void *)map, 3 * page);
    if (sigsetjmp(outer.env, 0) == 0) {
        inner_faulted = guarded_read_faults(map, 2 * page);
        (void)map[page + 7];
    } else {
        outer_faulted = 1;
    }
    mapguard_leave(&outer);
    CHECK(inner_faulted && outer_faulted, "nested guards: inner %d outer %d", inner_faulted,
          outer_faulted);

    pthread_t t;
    void *res = NULL;
    pthread_create(&t, NULL, thread_read, (void *)map);
    pthread_join(t, &res);
    CHECK(res && *(int *)res == 1, "read past the end on another thread not caught");

    st = in_child(read_unguarded, map);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS, "unguarded fault: status %d, want SIGBUS", st);
    st = in_child(read_under_other_guard, map);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS, "fault outside the guard's range: status %d",
          st);
    st = in_child(kill_inside_guard, map);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS, "raised SIGBUS: status %d, want SIGBUS", st);
    munmap((void *)map, 3 * page);
}

static int copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    int ok = in && out;
    char buf[1 << 16];
    size_t n;
    while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0) ok = fwrite(buf, 1, n, out) == n;
    if (in) fclose(in);
    if (out && fclose(out) != 0) ok = 0;
    return ok;
}

/* Open a copy of model, cut it to `keep` of its length, evaluate: an error, twice. */
static void check_forward(const char *model, const char *dir, double keep, int threads) {
    char path[4096], err[512];
    snprintf(path, sizeof path, "%s/cut.bin", dir);
    if (!copy_file(model, path)) {
        perror(path);
        exit(2);
    }
    edgemoe_model *m = NULL;
    edgemoe_context *ctx = NULL;
    if (edgemoe_model_open(path, &m, err, sizeof err) != EDGEMOE_OK
        || edgemoe_context_new(m, 64, threads, &ctx, err, sizeof err) != EDGEMOE_OK) {
        fprintf(stderr, "open: %s\n", err);
        exit(2);
    }
    edgemoe_model_info info;
    edgemoe_model_get_info(m, &info);
    float *logits = malloc((size_t)info.n_vocab * sizeof *logits);
    int32_t prompt[16];
    for (int i = 0; i < 16; i++) prompt[i] = (i * 7919 + 13) % info.n_vocab;
    CHECK(forward_batch(ctx, prompt, 16, 0, logits, 1) == EDGEMOE_OK, "intact file: %s",
          edgemoe_context_error(ctx));
    if (truncate(path, (off_t)(info.file_size * keep)) != 0) {
        perror(path);
        exit(2);
    }
    int rc = forward_batch(ctx, prompt, 16, 16, logits, 1);
    const char *msg = edgemoe_context_error(ctx);
    CHECK(rc == EDGEMOE_ERR_IO && strstr(msg, "truncated while in use") && strstr(msg, path),
          "cut to %.2f, %d threads: rc %d, message \"%s\"", keep, threads, rc, msg);
    rc = edgemoe_context_eval(ctx, prompt, 16, logits, 1);
    msg = edgemoe_context_error(ctx);
    CHECK(rc == EDGEMOE_ERR_IO && strstr(msg, "truncated to"),
          "next call, cut to %.2f: rc %d, message \"%s\"", keep, rc, msg);
    free(logits);
    edgemoe_context_free(ctx);
    edgemoe_model_free(m);
    unlink(path);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL.bin WORKDIR\n", argv[0]);
        return 2;
    }
    page = (size_t)sysconf(_SC_PAGESIZE);
    check_guard(argv[2]);
    const double keep[] = {0.02, 0.3, 0.6, 0.9};
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++)
        for (int threads = 1; threads <= 3; threads += 2) check_forward(argv[1], argv[2], keep[i], threads);
    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    puts("ok");
    return 0;
}
