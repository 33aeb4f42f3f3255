/*
 * The calls added after the first release, checked from C: model metadata and symbolic dim names,
 * extra (intermediate) outputs, run options with cancellation from another thread, and outputs
 * written into caller tensors. Bad input to each: NULL and dead handles, an unknown metadata key,
 * an axis out of range, an unknown extra output, a cancelled run, a caller tensor of the wrong
 * shape or type or one that overlaps an input.
 *
 *   usage: capi_additions TINY.onnx CHAIN.onnx [BATCH]
 *     TINY: examples/models/tiny_dcn.onnx (input "image" 1x3x32x32, output "probabilities" 1x10)
 *     CHAIN: a model made by Tests/python/test_capi_additions.py: input "image" [N,3,32,32],
 *            outputs "features" and "probabilities", metadata author=tests, slow at batch BATCH
 *            (default 64; the cancelled run is timed against a full one at that batch).
 * Run by Tests/python/test_capi_additions.py, also under valgrind. Prints one line per failed check
 * and exits 1 if any failed.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "checks.h"

static drt_tensor *image(int64_t batch, float value) {
    int64_t shape[4] = {batch, 3, 32, 32};
    size_t count = (size_t)batch * 3 * 32 * 32;
    float *data = malloc(count * sizeof(float));
    for (size_t i = 0; i < count; i++) data[i] = value * (float)((i * 7919) % 101) / 101.0f;
    drt_tensor *tensor = NULL;
    CHECK(drt_tensor_create(DRT_TYPE_FLOAT, shape, 4, data, count * sizeof(float), &tensor) == DRT_OK);
    free(data);
    return tensor;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void metadata(const char *tiny_path, const char *chain_path) {
    drt_model *tiny = load(tiny_path);
    drt_model *chain = load(chain_path);
    const char *text = NULL;
    int64_t version = 0;
    size_t count = 99;

    CHECK(drt_model_producer_name(tiny, &text) == DRT_OK && strcmp(text, "deformrt tools/make_example_model.py") == 0);
    CHECK(drt_model_graph_name(tiny, &text) == DRT_OK && strcmp(text, "tiny_dcn") == 0);
    CHECK(drt_model_version(tiny, &version) == DRT_OK && version == INT64_MAX);  /* not set in the file */
    CHECK(drt_model_metadata_count(tiny, &count) == DRT_OK && count == 0);

    CHECK(drt_model_producer_name(chain, &text) == DRT_OK && strcmp(text, "deformrt-tests") == 0);
    CHECK(drt_model_producer_version(chain, &text) == DRT_OK && strcmp(text, "1.2") == 0);
    CHECK(drt_model_domain(chain, &text) == DRT_OK && strcmp(text, "ai.deformrt.tests") == 0);
    CHECK(drt_model_description(chain, &text) == DRT_OK && strcmp(text, "test model") == 0);
    CHECK(drt_model_graph_name(chain, &text) == DRT_OK && strcmp(text, "conv_chain") == 0);
    CHECK(drt_model_graph_description(chain, &text) == DRT_OK && strcmp(text, "a chain") == 0);
    CHECK(drt_model_version(chain, &version) == DRT_OK && version == 7);
    CHECK(drt_model_metadata_count(chain, &count) == DRT_OK && count == 2);
    const char *key = NULL;
    CHECK(drt_model_metadata_key(chain, 0, &key) == DRT_OK && strcmp(key, "author") == 0);
    CHECK(drt_model_metadata_lookup(chain, key, &text) == DRT_OK && strcmp(text, "tests") == 0);
    /* The same pointer each time: borrowed from the model. */
    const char *again = NULL;
    CHECK(drt_model_metadata_lookup(chain, "author", &again) == DRT_OK && again == text);
    CHECK(drt_model_metadata_key(chain, 1, &key) == DRT_OK && strcmp(key, "empty") == 0);
    CHECK(drt_model_metadata_lookup(chain, "empty", &text) == DRT_OK && strcmp(text, "") == 0);

    /* Bad input. */
    text = "untouched";
    REFUSED(drt_model_metadata_lookup(chain, "no such key", &text), "no metadata key 'no such key'");
    CHECK(strstr(drt_last_error_message(), "'author'") != NULL);  /* lists the keys it has */
    CHECK(strcmp(text, "untouched") == 0);
    REFUSED(drt_model_metadata_lookup(tiny, "author", &text), "none");
    REFUSED(drt_model_metadata_key(chain, 2, &key), "out of range");
    REFUSED(drt_model_metadata_key(chain, (size_t)-1, &key), "out of range");
    REFUSED(drt_model_metadata_lookup(chain, NULL, &text), "key is NULL");
    REFUSED(drt_model_metadata_lookup(chain, "author", NULL), "out_value is NULL");
    REFUSED(drt_model_producer_name(NULL, &text), "drt_model_producer_name");
    REFUSED(drt_model_graph_description(chain, NULL), "drt_model_graph_description");
    REFUSED(drt_model_version(NULL, &version), "drt_model_version");
    REFUSED(drt_model_metadata_count(chain, NULL), "drt_model_metadata_count");

    /* Symbolic dims: image is [N, 3, 32, 32]; features is [N, 16, ?, ?]. */
    CHECK(drt_model_input_dim_name(chain, 0, 0, &text) == DRT_OK && strcmp(text, "N") == 0);
    CHECK(drt_model_input_dim_name(chain, 0, 1, &text) == DRT_OK && strcmp(text, "") == 0);
    CHECK(drt_model_output_dim_name(chain, 0, 0, &text) == DRT_OK && strcmp(text, "N") == 0);
    CHECK(drt_model_output_dim_name(chain, 0, 2, &text) == DRT_OK && strcmp(text, "") == 0);
    CHECK(drt_model_output_dim_name(chain, 1, 0, &text) == DRT_OK && strcmp(text, "N") == 0);
    REFUSED(drt_model_input_dim_name(chain, 0, 4, &text), "axis 4 is out of range");
    REFUSED(drt_model_output_dim_name(chain, 2, 0, &text), "index 2 is out of range");
    REFUSED(drt_model_input_dim_name(chain, 0, 0, NULL), "out_name is NULL");

    /* Freed models are refused; strings die with the model (not checked: that is the contract). */
    drt_model_free(tiny);
    REFUSED(drt_model_producer_name(tiny, &text), "not a live handle");
    drt_model_free(chain);
}

static void extra_outputs(const char *tiny_path) {
    drt_model *model = load(tiny_path);
    drt_session_options *options = NULL;
    drt_session *session = NULL;
    CHECK(drt_session_options_create(&options) == DRT_OK);
    REFUSED(drt_session_options_add_output(NULL, "stem"), "drt_session_options_add_output");
    REFUSED(drt_session_options_add_output(options, NULL), "name is NULL");
    REFUSED(drt_session_options_add_output(options, ""), "empty");
    CHECK(drt_session_options_add_output(options, "no_such_value") == DRT_OK);
    REFUSED(drt_session_options_add_output(options, "no_such_value"), "added already");
    CHECK(drt_session_create(model, options, &session) == DRT_ERROR_INVALID_ARGUMENT && session == NULL);
    CHECK(strstr(drt_last_error_message(), "'no_such_value'") != NULL);
    drt_session_options_free(options);

    /* "stem" is the first convolution's output, fused with its Relu by the passes otherwise. */
    CHECK(drt_session_options_create(&options) == DRT_OK);
    CHECK(drt_session_options_add_output(options, "stem") == DRT_OK);
    CHECK(drt_session_options_add_output(options, "stem.relu") == DRT_OK);
    CHECK(drt_session_create(model, options, &session) == DRT_OK);
    drt_session_options_free(options);
    drt_tensor *input = image(1, 1.0f);
    const char *input_names[1] = {"image"};
    const drt_tensor *inputs[1] = {input};
    const char *names[3] = {"stem", "probabilities", "stem.relu"};
    drt_tensor *outputs[3] = {NULL, NULL, NULL};
    CHECK(drt_session_run(session, input_names, inputs, 1, names, 3, outputs) == DRT_OK);
    size_t rank = 0;
    int64_t dims[4] = {0};
    CHECK(drt_tensor_shape(outputs[0], dims, 4, &rank) == DRT_OK && rank == 4 && dims[0] == 1 && dims[2] == 32);
    /* stem.relu == max(stem, 0) elementwise. */
    const float *stem = NULL, *relu = NULL;
    size_t bytes = 0;
    CHECK(drt_tensor_data(outputs[0], (const void **)&stem) == DRT_OK);
    CHECK(drt_tensor_data(outputs[2], (const void **)&relu) == DRT_OK);
    CHECK(drt_tensor_byte_size(outputs[0], &bytes) == DRT_OK && bytes > 0);
    int negative = 0, mismatched = 0;
    for (size_t i = 0; i < bytes / sizeof(float); i++) {
        if (stem[i] < 0) negative++;
        if (relu[i] != (stem[i] > 0 ? stem[i] : 0.0f)) mismatched++;
    }
    CHECK(negative > 0 && mismatched == 0);
    for (int i = 0; i < 3; i++) drt_tensor_free(outputs[i]);
    /* NULL output names still mean the model's one output. */
    drt_tensor *one[1] = {NULL};
    CHECK(drt_session_run(session, input_names, inputs, 1, NULL, 1, one) == DRT_OK && one[0] != NULL);
    drt_tensor_free(one[0]);
    REFUSED(drt_session_run(session, input_names, inputs, 1, NULL, 3, outputs), "output_count");
    drt_tensor_free(input);
    drt_session_free(session);
    drt_model_free(model);
}

struct stopper {
    drt_run_options *options;
    double delay;
};

static void *stop_later(void *argument) {
    struct stopper *stopper = argument;
    struct timespec pause = {0, (long)(stopper->delay * 1e9)};
    nanosleep(&pause, NULL);
    drt_run_options_set_terminate(stopper->options, 1);
    return NULL;
}

static void run_options(const char *chain_path, int64_t batch) {
    drt_model *model = load(chain_path);
    drt_session_options *options = NULL;
    drt_session *session = NULL;
    CHECK(drt_session_options_create(&options) == DRT_OK);
    CHECK(drt_session_options_set_threads(options, 2) == DRT_OK);
    CHECK(drt_session_create(model, options, &session) == DRT_OK);
    drt_session_options_free(options);
    drt_model_free(model);

    drt_run_options *run = NULL;
    REFUSED(drt_run_options_create(NULL), "drt_run_options_create");
    CHECK(drt_run_options_create(&run) == DRT_OK && run != NULL);
    REFUSED(drt_run_options_set_terminate(NULL, 1), "drt_run_options_set_terminate");
    drt_run_options_free(NULL);

    drt_tensor *input = image(batch, 1.0f);
    const char *input_names[1] = {"image"};
    const drt_tensor *inputs[1] = {input};
    drt_tensor *outputs[2] = {NULL, NULL};

    /* A full run, for its time. NULL run options are allowed. */
    double start = now();
    CHECK(drt_session_run_with_options(session, NULL, input_names, inputs, 1, NULL, 2, outputs) == DRT_OK);
    double full = now() - start;
    CHECK(outputs[0] != NULL && outputs[1] != NULL);
    drt_tensor_free(outputs[0]);
    drt_tensor_free(outputs[1]);
    outputs[0] = outputs[1] = NULL;

    /* Set before the run: it stops before its first node and writes nothing. */
    CHECK(drt_run_options_set_terminate(run, 1) == DRT_OK);
    CHECK(drt_session_run_with_options(session, run, input_names, inputs, 1, NULL, 2, outputs) == DRT_ERROR_CANCELLED);
    CHECK(strstr(drt_last_error_message(), "cancelled") != NULL);
    CHECK(outputs[0] == NULL && outputs[1] == NULL);

    /* Set from another thread while the run runs. */
    CHECK(drt_run_options_set_terminate(run, 0) == DRT_OK);
    struct stopper stopper = {run, full / 10};
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, stop_later, &stopper) == 0);
    start = now();
    drt_status status = drt_session_run_with_options(session, run, input_names, inputs, 1, NULL, 2, outputs);
    double cancelled = now() - start;
    pthread_join(thread, NULL);
    CHECK(status == DRT_ERROR_CANCELLED);
    CHECK(cancelled < full * 0.7);
    CHECK(outputs[0] == NULL && outputs[1] == NULL);
    if (cancelled >= full * 0.7) printf("FAIL cancelled run took %.3f s, a full one %.3f s\n", cancelled, full);

    /* Cleared: the session still runs. */
    CHECK(drt_run_options_set_terminate(run, 0) == DRT_OK);
    CHECK(drt_session_run_with_options(session, run, input_names, inputs, 1, NULL, 2, outputs) == DRT_OK);
    drt_tensor_free(outputs[0]);
    drt_tensor_free(outputs[1]);

    /* A run options handle is not a session options handle. */
    REFUSED(drt_session_run_with_options(session, (const drt_run_options *)session, input_names, inputs, 1, NULL, 2,
                                         outputs), "run_options is not a live handle");
    drt_run_options_free(run);
    REFUSED(drt_run_options_set_terminate(run, 1), "not a live handle");
    drt_tensor_free(input);
    drt_session_free(session);
}

static void caller_buffers(const char *chain_path) {
    drt_model *model = load(chain_path);
    drt_session *session = NULL;
    CHECK(drt_session_create(model, NULL, &session) == DRT_OK);
    drt_model_free(model);
    drt_tensor *input = image(3, 0.5f);
    const char *input_names[1] = {"image"};
    const drt_tensor *inputs[1] = {input};

    /* The library's outputs, for reference. */
    drt_tensor *reference[2] = {NULL, NULL};
    CHECK(drt_session_run(session, input_names, inputs, 1, NULL, 2, reference) == DRT_OK);
    const float *expected_probabilities = NULL;
    CHECK(drt_tensor_data(reference[1], (const void **)&expected_probabilities) == DRT_OK);

    /* probabilities (3 x 10) into the caller's buffer; features made by the library. */
    float buffer[30];
    for (int i = 0; i < 30; i++) buffer[i] = -1.0f;
    int64_t shape[2] = {3, 10};
    drt_tensor *mine = NULL;
    CHECK(drt_tensor_create_borrowed(DRT_TYPE_FLOAT, shape, 2, buffer, sizeof buffer, &mine) == DRT_OK);
    drt_tensor *outputs[2] = {NULL, mine};
    CHECK(drt_session_run_with_options(session, NULL, input_names, inputs, 1, NULL, 2, outputs) == DRT_OK);
    CHECK(outputs[1] == mine && outputs[0] != NULL);
    CHECK(memcmp(buffer, expected_probabilities, sizeof buffer) == 0);
    drt_tensor_free(outputs[0]);
    /* Selected by name, twice: the second gets its own copy. */
    for (int i = 0; i < 30; i++) buffer[i] = -1.0f;
    const char *names[2] = {"probabilities", "probabilities"};
    drt_tensor *twice[2] = {mine, NULL};
    CHECK(drt_session_run_with_options(session, NULL, input_names, inputs, 1, names, 2, twice) == DRT_OK);
    CHECK(twice[0] == mine && twice[1] != NULL && twice[1] != mine);
    const float *copy = NULL;
    CHECK(drt_tensor_data(twice[1], (const void **)&copy) == DRT_OK && copy != buffer);
    CHECK(memcmp(buffer, expected_probabilities, sizeof buffer) == 0 && memcmp(copy, buffer, sizeof buffer) == 0);
    drt_tensor_free(twice[1]);
    twice[1] = mine;
    twice[0] = NULL;
    CHECK(drt_session_run_with_options(session, NULL, input_names, inputs, 1, names, 2, twice) == DRT_OK);
    CHECK(twice[1] == mine && twice[0] != NULL && twice[0] != mine);
    CHECK(drt_tensor_data(twice[0], (const void **)&copy) == DRT_OK && copy != buffer);
    CHECK(memcmp(copy, expected_probabilities, sizeof buffer) == 0);
    drt_tensor_free(twice[0]);

    /* Wrong shape, wrong type: refused before anything runs, the buffer untouched. */
    for (int i = 0; i < 30; i++) buffer[i] = -1.0f;
    int64_t wrong_shape[2] = {10, 3};
    drt_tensor *wrong = NULL;
    CHECK(drt_tensor_create_borrowed(DRT_TYPE_FLOAT, wrong_shape, 2, buffer, sizeof buffer, &wrong) == DRT_OK);
    drt_tensor *bad[2] = {NULL, wrong};
    REFUSED(drt_session_run_with_options(session, NULL, input_names, inputs, 1, NULL, 2, bad), "[3, 10]");
    CHECK(bad[0] == NULL && buffer[0] == -1.0f);
    drt_tensor_free(wrong);
    int32_t ints[30];
    CHECK(drt_tensor_create_borrowed(DRT_TYPE_INT32, shape, 2, ints, sizeof ints, &wrong) == DRT_OK);
    bad[1] = wrong;
    REFUSED(drt_session_run_with_options(session, NULL, input_names, inputs, 1, NULL, 2, bad), "tensor(int32)");
    drt_tensor_free(wrong);
    /* An output tensor over the input's memory. */
    const void *input_data = NULL;
    CHECK(drt_tensor_data(input, &input_data) == DRT_OK);
    CHECK(drt_tensor_create_borrowed(DRT_TYPE_FLOAT, shape, 2, input_data, sizeof buffer, &wrong) == DRT_OK);
    bad[1] = wrong;
    REFUSED(drt_session_run_with_options(session, NULL, input_names, inputs, 1, NULL, 2, bad), "shares memory with an input");
    drt_tensor_free(wrong);
    /* The same caller tensor for two outputs. */
    drt_tensor *same[2] = {mine, mine};
    REFUSED(drt_session_run_with_options(session, NULL, input_names, inputs, 1, names, 2, same), "share memory");
    /* A dead handle in outputs. */
    drt_tensor *dead = NULL;
    CHECK(drt_tensor_create_borrowed(DRT_TYPE_FLOAT, shape, 2, buffer, sizeof buffer, &dead) == DRT_OK);
    drt_tensor_free(dead);
    bad[1] = dead;
    REFUSED(drt_session_run_with_options(session, NULL, input_names, inputs, 1, NULL, 2, bad), "outputs[1]");
    REFUSED(drt_session_run_with_options(session, NULL, input_names, inputs, 1, NULL, 2, NULL), "outputs is NULL");

    drt_tensor_free(mine);
    drt_tensor_free(reference[0]);
    drt_tensor_free(reference[1]);
    drt_tensor_free(input);
    drt_session_free(session);
}

int main(int argc, char **argv) {
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: %s TINY.onnx CHAIN.onnx [BATCH]\n", argv[0]);
        return 2;
    }
    int64_t batch = argc == 4 ? atoll(argv[3]) : 64;
    if (batch < 1 || batch > 1024) batch = 64;
    metadata(argv[1], argv[2]);
    extra_outputs(argv[1]);
    run_options(argv[2], batch);
    caller_buffers(argv[2]);
    return report();
}
