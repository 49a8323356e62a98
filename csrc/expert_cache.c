/*
 * expert_cache.c — the memory budget: dense weights read into memory, experts in a slab of
 * slots filled by background pread (see expert_cache.h, docs/MEMORY.md).
 */
#define _GNU_SOURCE   /* O_DIRECT */

#include "expert_cache.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "errbuf.h"
#include "format.h"

#define IO_ALIGN 4096u          /* O_DIRECT: offsets, lengths and buffers */
#define DENSE_ALIGN 64u

enum { SLOT_EMPTY, SLOT_QUEUED, SLOT_READING, SLOT_READY, SLOT_FAILED };

typedef struct slot {
    int32_t key;            /* l·E + e, -1 if empty */
    int state;              /* SLOT_* */
    int32_t pins;           /* acquired and not released */
    uint64_t step;          /* route() step that chose or read it; 0 once released */
    uint64_t last_use;      /* tick of its last use */
    uint8_t predicted;      /* read by predict() and not routed since */
    expert_weights view;    /* the expert's tensors, rebound into the slot */
} slot;

struct expert_cache {
    edgemoe_model *m;
    int fd;                 /* reads; O_DIRECT when `direct` */
    int fd_buffered;        /* dense tensors, embedding rows, and O_DIRECT's fallback */
    int direct;
    size_t slot_bytes;
    int32_t n_slots;
    uint8_t *slab;          /* n_slots · slot_bytes, page-aligned (anonymous mapping) */
    size_t slab_bytes;
    slot *slots;
    int32_t *where;         /* [n_layer · n_expert]: slot, or -1 */
    uint32_t *freq;         /* [n_layer · n_expert]: uses, halved every aging period (LFU); kept
                             * for experts not resident too, so popularity survives eviction */
    uint8_t *dense;         /* the non-expert tensors, read at open */
    size_t dense_bytes;
    int policy, predict;
    uint64_t budget;

    pthread_mutex_t mu;
    pthread_cond_t changed;   /* a read ended, or a slot was released */
    pthread_cond_t work;      /* a read was queued, or stop */
    int32_t *queue;           /* ring of slots to read, capacity n_slots */
    int32_t q_head, q_len;
    pthread_t *io;
    int n_io, stop;
    uint64_t step, tick, aging_at;
    char error[320];          /* the last read error */

    uint64_t uses, hits, misses, bytes_read, evictions, predicted, predicted_used;
    double io_wait_s;
};

/* ---------------------------------------------------------------------------------------
 * Reading
 */

static size_t round_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Read length bytes at offset into buf; the number read (short at end of file), -1 on error. */
static ssize_t read_at(int fd, uint8_t *buf, size_t length, uint64_t offset) {
    size_t done = 0;
    while (done < length) {
        ssize_t n = pread(fd, buf + done, length - done, (off_t)(offset + done));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        if (n == 0) break;
        done += (size_t)n;
    }
    return (ssize_t)done;
}

/* Read exactly `need` bytes of the file at offset (reading `length` >= need, for O_DIRECT's
 * rounding) into buf; 0 and a message naming what was read on failure. */
static int read_exact(expert_cache *c, int fd, uint8_t *buf, size_t length, size_t need,
                      uint64_t offset, const char *what, char *msg, size_t msg_len) {
    ssize_t n = read_at(fd, buf, length, offset);
    if (n < 0 && fd == c->fd && c->direct && errno == EINVAL) {   /* O_DIRECT refused this read */
        fd = c->fd_buffered;
        n = read_at(fd, buf, need, offset);
    }
    if (n < 0) {
        snprintf(msg, msg_len, "%s: cannot read %s at offset %llu: %s", c->m->path, what,
                 (unsigned long long)offset, strerror(errno));
        return 0;
    }
    if ((size_t)n < need) {
        snprintf(msg, msg_len,
                 "%s: %s at offset %llu: read %zd of %zu bytes (the file was truncated or "
                 "replaced while the model was open)", c->m->path, what, (unsigned long long)offset,
                 n, need);
        return 0;
    }
    if (fd == c->fd_buffered)   /* buffered: do not keep a second copy in the page cache */
        (void)posix_fadvise(fd, (off_t)offset, (off_t)need, POSIX_FADV_DONTNEED);
    return 1;
}

/* The span of expert `key` into slot s (called without the lock). */
static int slot_read(expert_cache *c, int32_t s, int32_t key, char *msg, size_t msg_len) {
    const expert_weights *x = &c->m->experts[key];
    const uint64_t offset = (uint64_t)(x->span - c->m->map);
    char what[64];
    snprintf(what, sizeof what, "the span of layer %d expert %d", key / c->m->hp.n_expert,
             key % c->m->hp.n_expert);
    uint8_t *dst = c->slab + (size_t)s * c->slot_bytes;
    const size_t length = c->direct ? round_up(x->span_length, IO_ALIGN) : x->span_length;
    return read_exact(c, c->fd, dst, length, x->span_length, offset, what, msg, msg_len);
}

static void *io_main(void *arg) {
    expert_cache *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->stop && c->q_len == 0) pthread_cond_wait(&c->work, &c->mu);
        if (c->stop) break;
        const int32_t s = c->queue[c->q_head];
        c->q_head = (c->q_head + 1) % c->n_slots;
        c->q_len--;
        slot *sl = &c->slots[s];
        const int32_t key = sl->key;
        sl->state = SLOT_READING;
        pthread_mutex_unlock(&c->mu);
        char msg[sizeof c->error];
        const int ok = slot_read(c, s, key, msg, sizeof msg);
        pthread_mutex_lock(&c->mu);
        sl->state = ok ? SLOT_READY : SLOT_FAILED;
        if (ok) c->bytes_read += c->m->experts[key].span_length;
        else memcpy(c->error, msg, sizeof msg);
        pthread_cond_broadcast(&c->changed);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* ---------------------------------------------------------------------------------------
 * Slots (all under the lock)
 */

static int32_t expert_count(const expert_cache *c) {
    return c->m->hp.n_layer * c->m->hp.n_expert;
}

static void touch(expert_cache *c, slot *sl, int use) {
    sl->last_use = ++c->tick;
    sl->step = c->step;
    if (!use) return;
    c->freq[sl->key]++;
    if (c->tick >= c->aging_at) {   /* LFU ages: old popularity fades */
        for (int32_t i = 0; i < expert_count(c); i++) c->freq[i] /= 2;
        c->aging_at = c->tick + 16 * (uint64_t)expert_count(c);
    }
}

/* 1 if slot a should go before slot b under the policy. */
static int evict_before(const expert_cache *c, const slot *a, const slot *b) {
    if (c->policy == EDGEMOE_POLICY_LFU && c->freq[a->key] != c->freq[b->key])
        return c->freq[a->key] < c->freq[b->key];
    return a->last_use < b->last_use;
}

/* A slot to (re)use: an empty one, else the policy's choice among the ready ones nobody
 * holds — and, unless `any_step`, not chosen in the current step. -1 if none. */
static int32_t victim(expert_cache *c, int any_step) {
    int32_t best = -1;
    for (int32_t i = 0; i < c->n_slots; i++) {
        const slot *sl = &c->slots[i];
        if (sl->state == SLOT_EMPTY) return i;
        if (sl->pins > 0 || sl->state == SLOT_QUEUED || sl->state == SLOT_READING) continue;
        if (!any_step && sl->step == c->step) continue;
        if (best < 0 || evict_before(c, sl, &c->slots[best])) best = i;
    }
    return best;
}

/* Give slot s to expert `key` and queue its read (at the front when someone waits for it). */
static void assign(expert_cache *c, int32_t s, int32_t key, int urgent) {
    slot *sl = &c->slots[s];
    if (sl->key >= 0) {
        c->where[sl->key] = -1;
        if (sl->state == SLOT_READY) c->evictions++;
    }
    const expert_weights *x = &c->m->experts[key];
    uint8_t *base = c->slab + (size_t)s * c->slot_bytes;
    sl->key = key;
    sl->state = SLOT_QUEUED;
    sl->predicted = 0;
    sl->view = *x;
    sl->view.span = base;
    sl->view.gate_up.data = base + (x->gate_up.data - x->span);
    sl->view.gate_up_bias.data = base + (x->gate_up_bias.data - x->span);
    sl->view.down.data = base + (x->down.data - x->span);
    sl->view.down_bias.data = base + (x->down_bias.data - x->span);
    c->where[key] = s;
    if (urgent) {
        c->q_head = (c->q_head + c->n_slots - 1) % c->n_slots;
        c->queue[c->q_head] = s;
    } else {
        c->queue[(c->q_head + c->q_len) % c->n_slots] = s;
    }
    c->q_len++;
    pthread_cond_signal(&c->work);
}

static int32_t key_of(const expert_cache *c, int32_t l, int e) {
    return l * c->m->hp.n_expert + e;
}

/* Why read_missing starts a read: the router chose the expert (a use), a batch reads ahead,
 * or a guess at the next layer. */
enum { READ_ROUTED, READ_AHEAD, READ_PREDICTED };

/* Start reads for the experts of layer l not resident, in order, into slots outside this step,
 * while there are such slots. */
static void read_missing(expert_cache *c, int32_t l, const int *experts, int n, int why) {
    for (int i = 0; i < n; i++) {
        const int32_t key = key_of(c, l, experts[i]);
        if (c->where[key] >= 0) continue;
        const int32_t s = victim(c, 0);
        if (s < 0) return;
        assign(c, s, key, 0);
        touch(c, &c->slots[s], why == READ_ROUTED);
        if (why == READ_PREDICTED) {
            c->slots[s].predicted = 1;
            c->slots[s].step = 0;   /* a guess: the next step may reuse it */
            c->predicted++;
        }
    }
}

/* ---------------------------------------------------------------------------------------
 * The forward pass's calls
 */

void expert_cache_route(expert_cache *c, int32_t l, const int *experts, int n) {
    pthread_mutex_lock(&c->mu);
    c->step++;
    for (int i = 0; i < n; i++) {   /* first mark every resident one: this step keeps them */
        const int32_t key = key_of(c, l, experts[i]);
        const int32_t s = c->where[key];
        c->uses++;
        if (s >= 0 && c->slots[s].state != SLOT_FAILED) {
            slot *sl = &c->slots[s];
            c->hits++;
            if (sl->predicted) c->predicted_used++;
            sl->predicted = 0;
            touch(c, sl, 1);
        } else {
            c->misses++;
        }
    }
    read_missing(c, l, experts, n, READ_ROUTED);
    pthread_mutex_unlock(&c->mu);
}

void expert_cache_readahead(expert_cache *c, int32_t l, const int *experts, int n) {
    pthread_mutex_lock(&c->mu);
    read_missing(c, l, experts, n, READ_AHEAD);
    pthread_mutex_unlock(&c->mu);
}

void expert_cache_predict(expert_cache *c, int32_t l, const int *experts, int n) {
    pthread_mutex_lock(&c->mu);
    read_missing(c, l, experts, n, READ_PREDICTED);
    pthread_mutex_unlock(&c->mu);
}

const expert_weights *expert_cache_acquire(expert_cache *c, int32_t l, int e, char *err,
                                           size_t err_len) {
    const int32_t key = key_of(c, l, e);
    pthread_mutex_lock(&c->mu);
    double waited_from = 0.0;
    int32_t s;
    while ((s = c->where[key]) < 0) {   /* not even queued: read it now, first in line */
        const int32_t v = victim(c, 1);
        if (v >= 0) {
            assign(c, v, key, 1);
            touch(c, &c->slots[v], 1);
            continue;
        }
        if (waited_from == 0.0) waited_from = now_s();
        pthread_cond_wait(&c->changed, &c->mu);   /* every slot held or in flight */
    }
    slot *sl = &c->slots[s];
    sl->pins++;
    while (sl->state == SLOT_QUEUED || sl->state == SLOT_READING) {
        if (waited_from == 0.0) waited_from = now_s();
        pthread_cond_wait(&c->changed, &c->mu);
    }
    if (waited_from != 0.0) c->io_wait_s += now_s() - waited_from;
    if (sl->state == SLOT_FAILED) {
        if (err && err_len) snprintf(err, err_len, "%s", c->error);
        if (--sl->pins == 0) {   /* forget it: a later call reads again */
            c->where[key] = -1;
            sl->key = -1;
            sl->state = SLOT_EMPTY;
        }
        pthread_cond_broadcast(&c->changed);
        pthread_mutex_unlock(&c->mu);
        return NULL;
    }
    pthread_mutex_unlock(&c->mu);
    return &sl->view;
}

void expert_cache_release(expert_cache *c, int32_t l, int e) {
    pthread_mutex_lock(&c->mu);
    const int32_t s = c->where[key_of(c, l, e)];
    if (s >= 0 && c->slots[s].pins > 0 && --c->slots[s].pins == 0) {
        c->slots[s].step = 0;
        pthread_cond_broadcast(&c->changed);
    }
    pthread_mutex_unlock(&c->mu);
}

int expert_cache_predicts(const expert_cache *c) { return c->predict; }

int expert_cache_embed_row(expert_cache *c, const tensor *embed, int64_t row, uint8_t *buf,
                           char *err, size_t err_len) {
    uint64_t row_bytes = 0;
    (void)tensor_nbytes(embed->type, (uint64_t)embed->cols, (uint64_t)embed->cols, &row_bytes);
    const uint64_t offset = (uint64_t)(embed->data - c->m->map) + (uint64_t)row * row_bytes;
    char msg[sizeof c->error];
    if (read_exact(c, c->fd_buffered, buf, (size_t)row_bytes, (size_t)row_bytes, offset,
                   "an embedding row", msg, sizeof msg))
        return 1;
    if (err && err_len) snprintf(err, err_len, "%s", msg);
    return 0;
}

void expert_cache_stats(expert_cache *c, edgemoe_model_stats *out) {
    pthread_mutex_lock(&c->mu);
    uint64_t resident = 0;
    for (int32_t i = 0; i < c->n_slots; i++)
        if (c->slots[i].state == SLOT_READY) resident += c->m->experts[c->slots[i].key].span_length;
    *out = (edgemoe_model_stats){
        .expert_uses = c->uses, .hits = c->hits, .misses = c->misses,
        .bytes_read = c->bytes_read, .evictions = c->evictions, .predicted = c->predicted,
        .predicted_used = c->predicted_used, .budget_bytes = c->budget,
        .dense_resident_bytes = c->dense_bytes, .slot_bytes = c->slot_bytes,
        .n_slots = (uint64_t)c->n_slots, .resident_expert_bytes = resident,
        .io_wait_s = c->io_wait_s,
    };
    pthread_mutex_unlock(&c->mu);
}

/* ---------------------------------------------------------------------------------------
 * Set-up
 */

/* The tensors read into memory under a budget: all but the experts and the embedding. */
static size_t dense_list(edgemoe_model *m, tensor **out) {
    size_t n = 0;
    for (int32_t l = 0; l < m->hp.n_layer; l++, n += LAYER_DENSE_TENSORS)
        if (out) layer_dense_tensors(&m->layers[l], out + n);
    if (out) {
        out[n] = &m->norm;
        out[n + 1] = &m->lm_head;
    }
    return n + 2;
}

static double mib(uint64_t b) { return (double)b / (1024.0 * 1024.0); }

/* Read the dense tensors into c->dense and point the model at them. */
static int dense_load(expert_cache *c, tensor **list, size_t n, char *err, size_t err_len) {
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        const size_t len = tensor_bytes(list[i]);
        char msg[sizeof c->error];
        if (!read_exact(c, c->fd_buffered, c->dense + at, len, len,
                        (uint64_t)(list[i]->data - c->m->map), "a dense tensor", msg, sizeof msg))
            return error_write(err, err_len, EDGEMOE_ERR_IO, "%s", msg);
        list[i]->data = c->dense + at;
        c->bytes_read += len;
        at += round_up(len, DENSE_ALIGN);
    }
    return EDGEMOE_OK;
}

int expert_cache_new(edgemoe_model *m, uint64_t budget, int policy, int io_threads, int predict,
                     char *err, size_t err_len) {
    if (policy != EDGEMOE_POLICY_LRU && policy != EDGEMOE_POLICY_LFU)
        return error_write(err, err_len, EDGEMOE_ERR_ARG, "policy %d is not EDGEMOE_POLICY_LFU or _LRU", policy);
    const size_t n_dense = dense_list(m, NULL);
    tensor **list = malloc(n_dense * sizeof *list);
    if (!list) return error_write(err, err_len, EDGEMOE_ERR_NOMEM, "out of memory");
    dense_list(m, list);
    size_t dense_bytes = 0, span_max = 0;
    for (size_t i = 0; i < n_dense; i++) dense_bytes += round_up(tensor_bytes(list[i]), DENSE_ALIGN);
    const int32_t n_experts = m->hp.n_layer * m->hp.n_expert;
    for (int32_t i = 0; i < n_experts; i++)
        if (m->experts[i].span_length > span_max) span_max = m->experts[i].span_length;
    const size_t slot_bytes = round_up(span_max, IO_ALIGN);
    const uint64_t need = (uint64_t)dense_bytes + (uint64_t)m->hp.n_expert_used * slot_bytes;
    if (budget < need) {
        free(list);
        return error_write(err, err_len, EDGEMOE_ERR_ARG,
                    "memory budget of %.1f MiB is too small for %s: its non-expert weights take "
                    "%.1f MiB and one layer's %d active experts %.1f MiB; the smallest budget is "
                    "%.1f MiB", mib(budget), m->path, mib(dense_bytes), m->hp.n_expert_used,
                    mib((uint64_t)m->hp.n_expert_used * slot_bytes), mib(need));
    }
    uint64_t slots = (budget - dense_bytes) / slot_bytes;
    if (slots > (uint64_t)n_experts) slots = (uint64_t)n_experts;

    expert_cache *c = calloc(1, sizeof *c);
    if (!c) {
        free(list);
        return error_write(err, err_len, EDGEMOE_ERR_NOMEM, "out of memory");
    }
    c->m = m;
    c->fd = c->fd_buffered = -1;
    c->slab = MAP_FAILED;
    c->dense = MAP_FAILED;
    c->policy = policy;
    c->predict = predict;
    c->budget = budget;
    c->slot_bytes = slot_bytes;
    c->n_slots = (int32_t)slots;
    c->aging_at = 16 * (uint64_t)n_experts;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->changed, NULL);
    pthread_cond_init(&c->work, NULL);
    m->cache = c;   /* expert_cache_free(m->cache) undoes whatever follows */

    int rc = EDGEMOE_OK;
    c->fd_buffered = open(m->path, O_RDONLY | O_CLOEXEC);
    c->fd = open(m->path, O_RDONLY | O_CLOEXEC | O_DIRECT);
    c->direct = c->fd >= 0;
    if (!c->direct) c->fd = c->fd_buffered;
    c->slab_bytes = (size_t)slots * slot_bytes;
    c->dense_bytes = dense_bytes;
    c->slots = calloc((size_t)slots, sizeof *c->slots);
    c->where = malloc((size_t)n_experts * sizeof *c->where);
    c->freq = calloc((size_t)n_experts, sizeof *c->freq);
    c->queue = malloc((size_t)slots * sizeof *c->queue);
    c->io = calloc((size_t)(io_threads > 0 ? io_threads : 1), sizeof *c->io);
    if (c->fd_buffered < 0) {
        rc = error_write(err, err_len, EDGEMOE_ERR_IO, "%s: cannot open: %s", m->path, strerror(errno));
    } else if (!c->slots || !c->where || !c->freq || !c->queue || !c->io) {
        rc = error_write(err, err_len, EDGEMOE_ERR_NOMEM, "out of memory");
    } else {
        c->slab = mmap(NULL, c->slab_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        c->dense = mmap(NULL, dense_bytes ? dense_bytes : 1, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (c->slab == MAP_FAILED || c->dense == MAP_FAILED)
            rc = error_write(err, err_len, EDGEMOE_ERR_NOMEM, "cannot allocate %.1f MiB for the budget: %s",
                      mib(c->slab_bytes + dense_bytes), strerror(errno));
    }
    if (rc == EDGEMOE_OK) rc = dense_load(c, list, n_dense, err, err_len);
    free(list);
    if (rc != EDGEMOE_OK) return rc;
    for (int32_t i = 0; i < n_experts; i++) c->where[i] = -1;
    for (int32_t i = 0; i < c->n_slots; i++) c->slots[i].key = -1;
    for (int i = 0; i < (io_threads > 0 ? io_threads : 1); i++) {
        if (pthread_create(&c->io[i], NULL, io_main, c) != 0)
            return error_write(err, err_len, EDGEMOE_ERR_NOMEM, "cannot start an I/O thread");
        c->n_io++;
    }
    return EDGEMOE_OK;
}

void expert_cache_free(expert_cache *c) {
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    c->stop = 1;
    pthread_cond_broadcast(&c->work);
    pthread_mutex_unlock(&c->mu);
    for (int i = 0; i < c->n_io; i++) pthread_join(c->io[i], NULL);
    if (c->slab != MAP_FAILED) munmap(c->slab, c->slab_bytes);
    if (c->dense != MAP_FAILED) munmap(c->dense, c->dense_bytes ? c->dense_bytes : 1);
    if (c->fd >= 0 && c->fd != c->fd_buffered) close(c->fd);
    if (c->fd_buffered >= 0) close(c->fd_buffered);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->changed);
    pthread_cond_destroy(&c->work);
    free(c->slots);
    free(c->where);
    free(c->freq);
    free(c->queue);
    free(c->io);
    free(c);
}
