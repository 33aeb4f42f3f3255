/*
 * Steady-state runs allocate (almost) nothing: after warm-up runs of one session on inputs of
 * the same shape, counts the heap allocations of each further drt_session_run (this program
 * defines malloc, calloc, realloc, posix_memalign, aligned_alloc and memalign, which the
 * library's calls resolve to) and prints them.
 *
 *   usage: steady_state MODEL.onnx INPUT_NAME D0xD1x... [THREADS [caller]]   (float input, zeros)
 *   prints "allocations per run: MIN MAX" over 20 runs, and "outputs: N". With "caller", the runs
 *   use drt_session_run_with_options with run options and write into tensors the program made
 *   once (after a first run told their shapes), so nothing is left to allocate.
 *
 * Run by Tests/python/test_capi.py, which bounds the count: what remains per run is the output
 * handles returned to the caller, not planning, name look-ups or per-run bookkeeping.
 */
#define _GNU_SOURCE
#include <deformrt.h>

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *pointer, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);

static atomic_long allocations = 0;

void *malloc(size_t size) {
    atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
    return __libc_malloc(size);
}

void *calloc(size_t count, size_t size) {
    atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
    return __libc_calloc(count, size);
}

void *realloc(void *pointer, size_t size) {
    atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
    return __libc_realloc(pointer, size);
}

void *memalign(size_t alignment, size_t size) {
    atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
    return __libc_memalign(alignment, size);
}

void *aligned_alloc(size_t alignment, size_t size) { return memalign(alignment, size); }

int posix_memalign(void **out, size_t alignment, size_t size) {
    void *pointer = memalign(alignment, size);
    if (pointer == NULL) return 12; /* ENOMEM */
    *out = pointer;
    return 0;
}

static void fail(const char *what) {
    printf("FAIL %s: %s\n", what, drt_last_error_message());
    exit(1);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        printf("usage: steady_state MODEL.onnx INPUT_NAME D0xD1x... [THREADS]\n");
        return 2;
    }
    int64_t shape[8];
    size_t rank = 0, count = 1;
    for (char *dim = strtok(argv[3], "x"); dim != NULL && rank < 8; dim = strtok(NULL, "x")) {
        shape[rank] = atoll(dim);
        count *= (size_t)shape[rank++];
    }
    float *pixels = calloc(count, sizeof(float));
    drt_model *model;
    drt_session_options *options;
    drt_session *session;
    drt_tensor *input;
    if (drt_model_load_file(argv[1], &model) != DRT_OK) fail("load");
    if (drt_session_options_create(&options) != DRT_OK) fail("options");
    if (drt_session_options_set_threads(options, argc > 4 ? atoi(argv[4]) : 1) != DRT_OK) fail("threads");
    if (drt_session_create(model, options, &session) != DRT_OK) fail("session");
    drt_session_options_free(options);
    if (drt_tensor_create_borrowed(DRT_TYPE_FLOAT, shape, rank, pixels, count * sizeof(float), &input) != DRT_OK)
        fail("input");
    size_t outputs = 0;
    if (drt_model_output_count(model, &outputs) != DRT_OK || outputs > 16) fail("outputs");
    const char *names[] = {argv[2]};
    const drt_tensor *inputs[] = {input};
    drt_tensor *results[16];
    int caller = argc > 5 && strcmp(argv[5], "caller") == 0;
    drt_run_options *run_options = NULL;
    drt_tensor *mine[16] = {NULL};
    if (caller) {
        if (drt_run_options_create(&run_options) != DRT_OK) fail("run options");
        if (drt_session_run(session, names, inputs, 1, NULL, outputs, results) != DRT_OK) fail("first run");
        for (size_t i = 0; i < outputs; i++) {
            int64_t dims[16];
            size_t out_rank = 0, bytes = 0;
            int32_t type = 0;
            const void *data = NULL;
            if (drt_tensor_shape(results[i], dims, 16, &out_rank) != DRT_OK || drt_tensor_element_type(results[i], &type) != DRT_OK ||
                drt_tensor_byte_size(results[i], &bytes) != DRT_OK || drt_tensor_data(results[i], &data) != DRT_OK)
                fail("output");
            if (drt_tensor_create(type, dims, out_rank, data, bytes, &mine[i]) != DRT_OK) fail("caller tensor");
            drt_tensor_free(results[i]);
        }
    }
    long least = -1, most = 0;
    for (int run = 0; run < 23; run++) {
        long before = atomic_load(&allocations);
        if (caller) {
            for (size_t i = 0; i < outputs; i++) results[i] = mine[i];
            if (drt_session_run_with_options(session, run_options, names, inputs, 1, NULL, outputs, results) != DRT_OK)
                fail("run with options");
            for (size_t i = 0; i < outputs; i++)
                if (results[i] != mine[i]) fail("caller tensor replaced");
        } else {
            if (drt_session_run(session, names, inputs, 1, NULL, outputs, results) != DRT_OK) fail("run");
            for (size_t i = 0; i < outputs; i++) drt_tensor_free(results[i]);
        }
        long made = atomic_load(&allocations) - before;
        if (run < 3) continue; /* warm-up: plan, output pools */
        if (least < 0 || made < least) least = made;
        if (made > most) most = made;
    }
    printf("allocations per run: %ld %ld\noutputs: %zu\n", least, most, outputs);
    for (size_t i = 0; i < outputs; i++) drt_tensor_free(mine[i]);
    drt_run_options_free(run_options);
    drt_tensor_free(input);
    drt_session_free(session);
    drt_model_free(model);
    free(pixels);
    return 0;
}
