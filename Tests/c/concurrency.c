/*
 * Threads through the C API, as a server embedding DeformRT uses it:
 *   1. one model shared by 8 sessions on 8 threads: outputs bit-identical to serial runs;
 *   2. one session called by 2 threads at once: the calls serialise and both get right results;
 *   3. model and sessions freed in any order, including the model while sessions still run;
 *   4. drt_last_error_message() is per thread.
 *
 *   usage: concurrency MODEL.onnx     (tiny_dcn.onnx: input "image" [1,3,32,32], 1 output)
 * Prints one line per failed check and exits 1 if any failed.
 */
#include <deformrt.h>

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THREADS 8
#define ROUNDS 4
#define PIXELS (3 * 32 * 32)
#define MAX_OUTPUT 64

static int failures = 0;
static pthread_mutex_t failure_lock = PTHREAD_MUTEX_INITIALIZER;

static void fail(const char *what, int index) {
    pthread_mutex_lock(&failure_lock);
    failures++;
    printf("FAIL %s (thread %d): %s\n", what, index, drt_last_error_message());
    pthread_mutex_unlock(&failure_lock);
}

/* A fixed pseudo-random image per seed. */
static void image(float *pixels, uint32_t seed) {
    uint32_t state = seed * 2654435761u + 1;
    for (int i = 0; i < PIXELS; i++) {
        state = state * 1664525u + 1013904223u;
        pixels[i] = (float)(state >> 8) / (float)(1u << 24) - 0.5f;
    }
}

/* Runs `session` on image `seed`; copies the output into `out` and returns its float count
 * (0 on failure). */
static size_t run_once(drt_session *session, uint32_t seed, float *out) {
    static const int64_t shape[4] = {1, 3, 32, 32};
    float pixels[PIXELS];
    image(pixels, seed);
    drt_tensor *input = NULL;
    if (drt_tensor_create_borrowed(DRT_TYPE_FLOAT, shape, 4, pixels, sizeof pixels, &input) != DRT_OK) return 0;
    const char *names[1] = {"image"};
    const drt_tensor *inputs[1] = {input};
    drt_tensor *outputs[1] = {NULL};
    size_t count = 0;
    if (drt_session_run(session, names, inputs, 1, NULL, 1, outputs) == DRT_OK) {
        const void *data = NULL;
        size_t bytes = 0;
        if (drt_tensor_data(outputs[0], &data) == DRT_OK && drt_tensor_byte_size(outputs[0], &bytes) == DRT_OK &&
            bytes <= MAX_OUTPUT * sizeof(float)) {
            memcpy(out, data, bytes);
            count = bytes / sizeof(float);
        }
        drt_tensor_free(outputs[0]);
    }
    drt_tensor_free(input);
    return count;
}

static drt_session *make_session(const drt_model *model, int threads) {
    drt_session_options *options = NULL;
    drt_session *session = NULL;
    if (drt_session_options_create(&options) != DRT_OK) return NULL;
    drt_session_options_set_threads(options, threads);
    if (drt_session_create(model, options, &session) != DRT_OK) session = NULL;
    drt_session_options_free(options);
    return session;
}

static float expected[THREADS][MAX_OUTPUT];
static size_t expected_count;

typedef struct {
    int index;
    drt_session *session;
    pthread_barrier_t *start;
    int free_session_at_end;
} worker;

static void *shared_model_worker(void *argument) {
    worker *w = argument;
    float out[MAX_OUTPUT];
    pthread_barrier_wait(w->start);
    for (int round = 0; round < ROUNDS; round++) {
        uint32_t seed = (uint32_t)((w->index + round) % THREADS);
        size_t count = run_once(w->session, seed, out);
        if (count != expected_count || memcmp(out, expected[seed], count * sizeof(float)) != 0) {
            fail("output differs from the serial run", w->index);
        }
    }
    if (w->free_session_at_end) drt_session_free(w->session);
    return NULL;
}

/* 1 and 3: eight sessions on one model; the model is freed while they run. */
static void shared_model(const char *path) {
    drt_model *model = NULL;
    if (drt_model_load_file(path, &model) != DRT_OK) {
        fail("load", -1);
        return;
    }
    drt_session *serial = make_session(model, 2);
    for (uint32_t seed = 0; seed < THREADS; seed++) {
        expected_count = run_once(serial, seed, expected[seed]);
        if (expected_count == 0) fail("serial run", (int)seed);
    }
    drt_session_free(serial);

    pthread_t threads[THREADS];
    worker workers[THREADS];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, THREADS + 1);
    for (int i = 0; i < THREADS; i++) {
        workers[i] = (worker){i, make_session(model, 2), &start, 1};
        if (workers[i].session == NULL) fail("session", i);
        pthread_create(&threads[i], NULL, shared_model_worker, &workers[i]);
    }
    drt_model_free(model);  /* the sessions keep it alive */
    pthread_barrier_wait(&start);
    for (int i = 0; i < THREADS; i++) pthread_join(threads[i], NULL);
    pthread_barrier_destroy(&start);
}

/* 2: two threads call the same session at the same time. */
static void shared_session(const char *path) {
    drt_model *model = NULL;
    if (drt_model_load_file(path, &model) != DRT_OK) {
        fail("load", -1);
        return;
    }
    drt_session *session = make_session(model, 2);
    drt_model_free(model);
    pthread_t threads[2];
    worker workers[2];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, 3);
    for (int i = 0; i < 2; i++) {
        workers[i] = (worker){i, session, &start, 0};
        pthread_create(&threads[i], NULL, shared_model_worker, &workers[i]);
    }
    pthread_barrier_wait(&start);
    for (int i = 0; i < 2; i++) pthread_join(threads[i], NULL);
    pthread_barrier_destroy(&start);
    drt_session_free(session);
}

/* 4: each thread fails in its own way and reads back its own message. */
static pthread_barrier_t error_barrier;

static void *error_worker(void *argument) {
    int index = *(int *)argument;
    char expected_text[64];
    snprintf(expected_text, sizeof expected_text, "/nonexistent/%d.onnx", index);
    for (int round = 0; round < 200; round++) {
        drt_model *model = NULL;
        drt_model_load_file(expected_text, &model);
        pthread_barrier_wait(&error_barrier);  /* both threads have failed before either reads */
        if (strstr(drt_last_error_message(), expected_text) == NULL) fail("message from another thread", index);
        pthread_barrier_wait(&error_barrier);
    }
    return NULL;
}

static void thread_local_errors(void) {
    pthread_t threads[2];
    int indices[2] = {0, 1};
    pthread_barrier_init(&error_barrier, NULL, 2);
    for (int i = 0; i < 2; i++) pthread_create(&threads[i], NULL, error_worker, &indices[i]);
    for (int i = 0; i < 2; i++) pthread_join(threads[i], NULL);
    pthread_barrier_destroy(&error_barrier);
    if (strcmp(drt_last_error_message(), "") != 0) fail("main thread sees a worker's message", -1);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL.onnx\n", argv[0]);
        return 2;
    }
    shared_model(argv[1]);
    shared_session(argv[1]);
    thread_local_errors();
    printf("%s\n", failures == 0 ? "all concurrency checks passed" : "concurrency checks failed");
    return failures == 0 ? 0 : 1;
}
