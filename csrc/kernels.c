/*
 * kernels.c — choose the kernel table at run time.
 *
 * Candidates are listed best first; each has a test for the CPU it needs. Today only the
 * scalar reference exists. The choice is recomputed on every call (a getenv and a short
 * loop), which keeps it free of global state; contexts call it once when created.
 */
#include <stdlib.h>
#include <string.h>

#include "edgemoe.h"
#include "kernels.h"
#include "kernels_ref.h"

typedef struct kernel_candidate {
    const kernel_table *table;
    int (*available)(void);   /* 1 if this CPU can run the table */
} kernel_candidate;

static int always_available(void) { return 1; }

/* Best first; the reference must stay last (it always runs). */
static const kernel_candidate CANDIDATES[] = {
    {&KERNELS_REFERENCE, always_available},
};
#define N_CANDIDATES (sizeof CANDIDATES / sizeof CANDIDATES[0])

const kernel_table *kernels_get(void) {
    const char *wanted = getenv("EDGEMOE_KERNELS");
    if (wanted && *wanted) {
        for (size_t i = 0; i < N_CANDIDATES; i++) {
            if (strcmp(CANDIDATES[i].table->name, wanted) == 0 && CANDIDATES[i].available())
                return CANDIDATES[i].table;
        }
    }
    for (size_t i = 0; i < N_CANDIDATES; i++) {
        if (CANDIDATES[i].available()) return CANDIDATES[i].table;
    }
    return &KERNELS_REFERENCE;
}

const char *edgemoe_kernels_name(void) {
    return kernels_get()->name;
}
