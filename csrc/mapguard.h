/*
 * mapguard.h — a SIGBUS from reading the model's mapping, turned into an error.
 *
 * Without a memory budget the model file is mapped and read in place. If something truncates
 * the file while a call reads it, the next touch of a page past the new end raises SIGBUS,
 * which by default kills the process. A thread that is about to read the mapping opens a
 * guard over the mapped range; the process-wide SIGBUS handler (installed once, at the first
 * mapguard_install) jumps back to the innermost guard of the faulting thread when the fault
 * address lies inside that guard's range, and otherwise passes the signal on to the handler
 * that was installed before it (by default: the process dies, as without edgemoe).
 *
 * Use (sigsetjmp must run in the frame that stays live, and as the whole condition of an if):
 *
 *     mapguard g;
 *     mapguard_push(&g, base, size);
 *     if (sigsetjmp(g.env, 0) == 0) { ...read the mapping...; } else { ...it faulted...; }
 *     mapguard_leave(&g);
 *
 * Between push and leave the guarded code must hold no lock and leave nothing half-done that
 * outlives it: a fault abandons it at any instruction. The signal mask is not saved (no system
 * call per guard): the handler runs with SA_NODEFER, so a jump out of it leaves SIGBUS unblocked.
 */
#ifndef EDGEMOE_MAPGUARD_H
#define EDGEMOE_MAPGUARD_H

#include <setjmp.h>
#include <stddef.h>

typedef struct mapguard {
    sigjmp_buf env;
    const void *base;            /* the guarded range: a fault at [base, base + size) returns */
    size_t size;
    struct mapguard *outer;      /* the thread's enclosing guard, or NULL */
} mapguard;

/* Install the SIGBUS handler (once per process; later calls do nothing). 0 on success, -1
 * if sigaction failed (then guards catch nothing, and a fault kills the process as before). */
int mapguard_install(void);

/* Open guard g over [base, base + size) on the calling thread, inside any guard it has. */
void mapguard_push(mapguard *g, const void *base, size_t size);

/* Close guard g, the thread's innermost, after a normal return or a fault. */
void mapguard_leave(mapguard *g);

#endif /* EDGEMOE_MAPGUARD_H */
