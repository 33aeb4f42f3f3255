/*
 * The C API contract, checked from C: every entry point answers NULL, freed, foreign and
 * wrongly-typed handles with DRT_ERROR_INVALID_ARGUMENT and a message; _free(NULL) does nothing;
 * status strings exist for every code; buffer-too-small reporting; handles freed in any order.
 *
 *   usage: capi_contract MODEL.onnx     (run by Tests/python/test_capi.py, also under valgrind)
 * Prints one line per failed check and exits 1 if any failed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checks.h"

static drt_tensor *zeros(const int64_t *shape, size_t rank) {
    size_t count = 1;
    for (size_t i = 0; i < rank; i++) count *= (size_t)shape[i];
    float *data = calloc(count, sizeof(float));
    drt_tensor *tensor = NULL;
    CHECK(drt_tensor_create(DRT_TYPE_FLOAT, shape, rank, data, count * sizeof(float), &tensor) == DRT_OK);
    free(data);
    return tensor;
}

static void null_and_dead_handles(const char *model_path) {
    size_t count = 0, rank = 0;
    int32_t type = 0;
    const char *name = NULL;
    int64_t dims[8];
    const void *data = NULL;
    drt_model *model = NULL;
    drt_session *session = NULL;
    drt_session_options *options = NULL;
    drt_tensor *tensor = NULL;
    drt_tensor *outputs[1] = {NULL};
    int foreign = 0;

    /* NULL handles and NULL out-pointers. */
    REFUSED(drt_model_load_file(NULL, &model), "drt_model_load_file");
    REFUSED(drt_model_load_file(model_path, NULL), "drt_model_load_file");
    REFUSED(drt_model_load_memory(NULL, 10, &model), "drt_model_load_memory");
    REFUSED(drt_model_load_memory("x", 0, &model), "drt_model_load_memory");
    REFUSED(drt_model_load_memory("x", 1, NULL), "drt_model_load_memory");
    REFUSED(drt_model_input_count(NULL, &count), "drt_model_input_count");
    REFUSED(drt_model_output_count(NULL, &count), "drt_model_output_count");
    REFUSED(drt_model_input_name(NULL, 0, &name), "drt_model_input_name");
    REFUSED(drt_model_output_name(NULL, 0, &name), "drt_model_output_name");
    REFUSED(drt_model_input_element_type(NULL, 0, &type), "drt_model_input_element_type");
    REFUSED(drt_model_output_element_type(NULL, 0, &type), "drt_model_output_element_type");
    REFUSED(drt_model_input_shape(NULL, 0, dims, 8, &rank), "drt_model_input_shape");
    REFUSED(drt_model_output_shape(NULL, 0, dims, 8, &rank), "drt_model_output_shape");
    REFUSED(drt_session_options_create(NULL), "drt_session_options_create");
    REFUSED(drt_session_options_set_threads(NULL, 1), "drt_session_options_set_threads");
    REFUSED(drt_session_options_set_memory_limit(NULL, 1), "drt_session_options_set_memory_limit");
    REFUSED(drt_session_create(NULL, NULL, &session), "drt_session_create");
    REFUSED(drt_session_run(NULL, NULL, NULL, 0, NULL, 1, outputs), "drt_session_run");
    REFUSED(drt_tensor_create(DRT_TYPE_FLOAT, NULL, 1, NULL, 0, &tensor), "drt_tensor_create");
    REFUSED(drt_tensor_create_borrowed(DRT_TYPE_FLOAT, NULL, 1, NULL, 0, &tensor), "drt_tensor_create_borrowed");
    REFUSED(drt_tensor_data(NULL, &data), "drt_tensor_data");
    REFUSED(drt_tensor_element_type(NULL, &type), "drt_tensor_element_type");
    REFUSED(drt_tensor_rank(NULL, &rank), "drt_tensor_rank");
    REFUSED(drt_tensor_shape(NULL, dims, 8, &rank), "drt_tensor_shape");
    REFUSED(drt_tensor_byte_size(NULL, &count), "drt_tensor_byte_size");
    REFUSED(drt_cpu_tier(NULL), "drt_cpu_tier");
    CHECK(drt_cpu_tier(&name) == DRT_OK && name != NULL && name[0] != '\0');

    /* Live handles with NULL out-pointers. */
    model = load(model_path);
    REFUSED(drt_model_input_count(model, NULL), "drt_model_input_count");
    REFUSED(drt_model_output_count(model, NULL), "drt_model_output_count");
    REFUSED(drt_model_input_name(model, 0, NULL), "drt_model_input_name");
    REFUSED(drt_model_input_element_type(model, 0, NULL), "drt_model_input_element_type");
    REFUSED(drt_model_input_shape(model, 0, dims, 8, NULL), "drt_model_input_shape");
    REFUSED(drt_model_input_shape(model, 0, NULL, 8, &rank), "drt_model_input_shape");
    REFUSED(drt_session_create(model, NULL, NULL), "drt_session_create");
    CHECK(drt_session_create(model, NULL, &session) == DRT_OK);
    REFUSED(drt_session_run(session, NULL, NULL, 0, NULL, 1, NULL), "drt_session_run");
    REFUSED(drt_session_run(session, NULL, NULL, 1, NULL, 1, outputs), "drt_session_run");
    const int64_t shape[4] = {1, 3, 32, 32};
    tensor = zeros(shape, 4);
    REFUSED(drt_tensor_data(tensor, NULL), "drt_tensor_data");
    REFUSED(drt_tensor_element_type(tensor, NULL), "drt_tensor_element_type");
    REFUSED(drt_tensor_rank(tensor, NULL), "drt_tensor_rank");
    REFUSED(drt_tensor_shape(tensor, dims, 8, NULL), "drt_tensor_shape");
    REFUSED(drt_tensor_byte_size(tensor, NULL), "drt_tensor_byte_size");

    /* Out-of-range indices. */
    REFUSED(drt_model_input_name(model, 1, &name), "drt_model_input_name");
    REFUSED(drt_model_output_name(model, (size_t)-1, &name), "drt_model_output_name");
    REFUSED(drt_model_output_shape(model, 99, dims, 8, &rank), "drt_model_output_shape");

    /* Handles of the wrong type and foreign pointers. */
    REFUSED(drt_model_input_count((const drt_model *)tensor, &count), "drt_model_input_count");
    REFUSED(drt_session_create((const drt_model *)session, NULL, &session), "drt_session_create");
    REFUSED(drt_session_run((drt_session *)model, NULL, NULL, 0, NULL, 1, outputs), "drt_session_run");
    REFUSED(drt_tensor_rank((const drt_tensor *)&foreign, &rank), "drt_tensor_rank");
    REFUSED(drt_session_options_set_threads((drt_session_options *)&foreign, 1), "drt_session_options_set_threads");
    REFUSED(drt_session_create(model, (const drt_session_options *)model, &session), "drt_session_create");
    const drt_tensor *foreign_inputs[1] = {(const drt_tensor *)&foreign};
    const char *input_names[1] = {"image"};
    REFUSED(drt_session_run(session, input_names, foreign_inputs, 1, NULL, 1, outputs), "drt_session_run");
    drt_model_free((drt_model *)&foreign);  /* not ours: ignored */
    drt_tensor_free((drt_tensor *)model);  /* wrong type: ignored, the model stays alive */
    CHECK(drt_model_input_count(model, &count) == DRT_OK && count == 1);

    /* Freed handles. */
    drt_tensor_free(tensor);
    REFUSED(drt_tensor_rank(tensor, &rank), "drt_tensor_rank");
    const drt_tensor *dead_inputs[1] = {tensor};
    REFUSED(drt_session_run(session, input_names, dead_inputs, 1, NULL, 1, outputs), "drt_session_run");
    drt_tensor_free(tensor);  /* a second free of a dead handle is ignored */
    drt_session_free(session);
    REFUSED(drt_session_run(session, NULL, NULL, 0, NULL, 1, outputs), "drt_session_run");
    drt_model_free(model);
    REFUSED(drt_model_input_count(model, &count), "drt_model_input_count");
    REFUSED(drt_session_create(model, NULL, &session), "drt_session_create");
    CHECK(drt_session_options_create(&options) == DRT_OK);
    drt_session_options_free(options);
    REFUSED(drt_session_options_set_memory_limit(options, 1), "drt_session_options_set_memory_limit");
    CHECK(outputs[0] == NULL);  /* failures never write outputs */

    /* _free(NULL) does nothing. */
    drt_model_free(NULL);
    drt_session_free(NULL);
    drt_session_options_free(NULL);
    drt_tensor_free(NULL);
}

static void status_strings(void) {
    for (int code = DRT_OK; code <= DRT_ERROR_CANCELLED; code++) {
        const char *text = drt_status_string((drt_status)code);
        CHECK(text != NULL && text[0] != '\0' && strcmp(text, "unknown status") != 0);
    }
    CHECK(strcmp(drt_status_string(DRT_OK), "ok") == 0);
    CHECK(strcmp(drt_status_string(DRT_ERROR_CANCELLED), "cancelled") == 0);
    CHECK(strcmp(drt_status_string((drt_status)9), "unknown status") == 0);
    CHECK(strcmp(drt_status_string((drt_status)1000), "unknown status") == 0);
    CHECK(strcmp(drt_status_string((drt_status)-1), "unknown status") == 0);
    CHECK(drt_version() != NULL && strlen(drt_version()) >= 5);
}

static void buffers_and_options(const char *model_path) {
    drt_model *model = load(model_path);
    int64_t dims[4] = {-7, -7, -7, -7};
    size_t rank = 0;
    CHECK(drt_model_input_shape(model, 0, NULL, 0, &rank) == DRT_ERROR_BUFFER_TOO_SMALL && rank == 4);
    CHECK(strstr(drt_last_error_message(), "capacity") != NULL);
    rank = 0;
    CHECK(drt_model_input_shape(model, 0, dims, 3, &rank) == DRT_ERROR_BUFFER_TOO_SMALL && rank == 4);
    CHECK(dims[0] == -7);  /* nothing written when it does not fit */
    CHECK(drt_model_input_shape(model, 0, dims, 4, &rank) == DRT_OK && rank == 4);
    CHECK(dims[0] == 1 && dims[1] == 3 && dims[2] == 32 && dims[3] == 32);

    drt_session_options *options = NULL;
    CHECK(drt_session_options_create(&options) == DRT_OK);
    REFUSED(drt_session_options_set_threads(options, -1), "drt_session_options_set_threads");
    REFUSED(drt_session_options_set_threads(options, 257), "drt_session_options_set_threads");
    CHECK(drt_session_options_set_threads(options, 0) == DRT_OK);
    CHECK(drt_session_options_set_threads(options, 2) == DRT_OK);
    CHECK(drt_session_options_set_memory_limit(options, 1024) == DRT_OK);
    drt_session *session = NULL;
    CHECK(drt_session_create(model, options, &session) == DRT_ERROR_OUT_OF_MEMORY && session == NULL);
    CHECK(strstr(drt_last_error_message(), "memory limit") != NULL);
    CHECK(drt_session_options_set_memory_limit(options, 0) == DRT_OK);  /* back to the default */
    CHECK(drt_session_create(model, options, &session) == DRT_OK);
    drt_session_options_free(options);  /* the session copied it */

    const int64_t shape[4] = {1, 3, 32, 32};
    drt_tensor *input = zeros(shape, 4);
    const char *names[1] = {"image"};
    const drt_tensor *inputs[1] = {input};
    drt_tensor *outputs[2] = {NULL, NULL};
    REFUSED(drt_session_run(session, names, inputs, 1, NULL, 2, outputs), "drt_session_run");
    const char *bad_output[1] = {"nope"};
    CHECK(drt_session_run(session, names, inputs, 1, bad_output, 1, outputs) == DRT_ERROR_INVALID_ARGUMENT);
    const char *null_name[1] = {NULL};
    REFUSED(drt_session_run(session, null_name, inputs, 1, NULL, 1, outputs), "drt_session_run");
    CHECK(outputs[0] == NULL);

    /* The model freed first: the session keeps it alive. */
    drt_model_free(model);
    CHECK(drt_session_run(session, names, inputs, 1, NULL, 1, outputs) == DRT_OK && outputs[0] != NULL);
    int64_t out_dims[1];
    size_t out_rank = 0;
    CHECK(drt_tensor_shape(outputs[0], out_dims, 1, &out_rank) == DRT_ERROR_BUFFER_TOO_SMALL && out_rank == 2);
    size_t bytes = 0;
    CHECK(drt_tensor_byte_size(outputs[0], &bytes) == DRT_OK && bytes == 10 * sizeof(float));
    drt_session_free(session);
    /* Outputs outlive the session. */
    const void *data = NULL;
    CHECK(drt_tensor_data(outputs[0], &data) == DRT_OK && data != NULL);
    drt_tensor_free(outputs[0]);
    drt_tensor_free(input);

    /* Zero-size tensors may come with NULL data. */
    const int64_t empty_shape[2] = {0, 5};
    drt_tensor *empty = NULL;
    CHECK(drt_tensor_create_borrowed(DRT_TYPE_FLOAT, empty_shape, 2, NULL, 0, &empty) == DRT_OK);
    CHECK(drt_tensor_byte_size(empty, &bytes) == DRT_OK && bytes == 0);
    drt_tensor_free(empty);
    CHECK(drt_tensor_create(DRT_TYPE_FLOAT, NULL, 0, &bytes, 4, &empty) == DRT_OK);  /* a scalar */
    CHECK(drt_tensor_rank(empty, &rank) == DRT_OK && rank == 0);
    drt_tensor_free(empty);
}

static void io_errors(void) {
    drt_model *model = NULL;
    CHECK(drt_model_load_file("/nonexistent/model.onnx", &model) == DRT_ERROR_IO && model == NULL);
    CHECK(strstr(drt_last_error_message(), "/nonexistent/model.onnx") != NULL);
    CHECK(drt_model_load_file("/", &model) == DRT_ERROR_IO);
    CHECK(drt_model_load_memory("garbage!", 8, &model) == DRT_ERROR_INVALID_MODEL && model == NULL);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL.onnx\n", argv[0]);
        return 2;
    }
    CHECK(strcmp(drt_last_error_message(), "") == 0);  /* nothing failed on this thread yet */
    null_and_dead_handles(argv[1]);
    status_strings();
    buffers_and_options(argv[1]);
    io_errors();
    return report();
}
