/*
 * mapguard.c — the SIGBUS handler of mapguard.h.
 *
 * The handler may only do async-signal-safe things. It reads one thread-local pointer (the
 * thread's innermost guard) with the initial-exec TLS model, a plain load from the thread
 * pointer that never allocates (the general-dynamic model of a dlopen-ed library may allocate
 * on a thread's first access, not something to do in a signal handler); compares the fault
 * address; and either siglongjmps to the guard or hands the signal to the previous handler.
 */
#define _XOPEN_SOURCE 700   /* SA_ONSTACK, SA_NODEFER */

#include "mapguard.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__)
#define TLS_INITIAL_EXEC __attribute__((tls_model("initial-exec")))
#else
#define TLS_INITIAL_EXEC
#endif

static _Thread_local mapguard *innermost TLS_INITIAL_EXEC;

static struct sigaction previous;   /* the SIGBUS disposition before ours */
static pthread_once_t install_once = PTHREAD_ONCE_INIT;
static int install_status = -1;

/* A fault (not a kill/raise) at an address inside guard g. */
static int caught_by(const mapguard *g, const siginfo_t *info) {
    if (!g || info->si_code <= 0) return 0;   /* si_code <= 0: sent by a process, not a fault */
    const uintptr_t a = (uintptr_t)info->si_addr, base = (uintptr_t)g->base;
    return a >= base && a - base < g->size;
}

/* Not ours: as if our handler were not there. */
static void pass_on(int sig, siginfo_t *info, void *uctx) {
    if (previous.sa_flags & SA_SIGINFO) {
        previous.sa_sigaction(sig, info, uctx);
        return;
    }
    if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
        previous.sa_handler(sig);
        return;
    }
    /* default action (ignoring a fault is not possible): restore it and let the signal recur,
     * re-sent for a kill, by re-executing the faulting instruction for a fault */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    if (info->si_code <= 0) raise(sig);
}

static void on_sigbus(int sig, siginfo_t *info, void *uctx) {
    mapguard *g = innermost;
    if (caught_by(g, info)) siglongjmp(g->env, 1);
    pass_on(sig, info, uctx);
}

static void install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    install_status = sigaction(SIGBUS, &sa, &previous) == 0 ? 0 : -1;
}

int mapguard_install(void) {
    pthread_once(&install_once, install);
    return install_status;
}

void mapguard_push(mapguard *g, const void *base, size_t size) {
    g->base = base;
    g->size = size;
    g->outer = innermost;
    /* g complete before it is published to this thread's handler, even under inlining/LTO */
    atomic_signal_fence(memory_order_seq_cst);
    innermost = g;
}

void mapguard_leave(mapguard *g) {
    atomic_signal_fence(memory_order_seq_cst);   /* the guarded reads stay before this */
    innermost = g->outer;
}
