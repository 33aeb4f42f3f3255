/*
 * Runs the bundled tiny deformable ConvNet through the DeformRT C API and prints the three most
 * probable classes, one per line as "class <index>: <probability>".
 *
 *   usage: c-example [MODEL.onnx [INPUT.npy]]
 *   defaults: examples/models/tiny_dcn.onnx and examples/models/tiny_dcn_input.npy
 *
 * The input is a NumPy .npy file holding little-endian float32 in C order (format 1.0, 2.0 or 3.0).
 */
#include <deformrt.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_RANK 8
#define TOP_K 3

typedef struct {
    float *values;
    size_t count;
    int64_t shape[MAX_RANK];
    size_t rank;
} float_array;

/* Reports a failed DeformRT call and tells the caller to stop. */
static int failed(drt_status status, const char *call) {
    if (status == DRT_OK) {
        return 0;
    }
    fprintf(stderr, "%s failed: %s: %s\n", call, drt_status_string(status), drt_last_error_message());
    return 1;
}

/* Parses the dims in the header's "'shape': (1, 3, 32, 32)," entry. */
static int parse_npy_shape(const char *header, float_array *array) {
    const char *cursor = strstr(header, "'shape':");
    if (cursor == NULL || (cursor = strchr(cursor, '(')) == NULL) {
        return 0;
    }
    cursor++;
    array->rank = 0;
    array->count = 1;
    for (;;) {
        while (*cursor == ' ' || *cursor == ',') {
            cursor++;
        }
        if (*cursor == ')') {
            return 1;
        }
        char *end;
        long long dim = strtoll(cursor, &end, 10);
        if (end == cursor || dim < 0 || array->rank == MAX_RANK ||
            (dim > 0 && array->count > SIZE_MAX / sizeof(float) / (size_t)dim)) {
            return 0;
        }
        array->shape[array->rank++] = dim;
        array->count *= (size_t)dim;
        cursor = end;
    }
}

/* Reads a little-endian float32 C-order .npy file. Returns 1 on success; the caller frees
 * array->values. */
static int read_npy(const char *path, float_array *array) {
    FILE *file = fopen(path, "rb");
    if (file == NULL) {
        fprintf(stderr, "cannot open %s\n", path);
        return 0;
    }
    int ok = 0;
    char *header = NULL;
    unsigned char *bytes = NULL;
    unsigned char preamble[12];
    if (fread(preamble, 1, 8, file) != 8 || memcmp(preamble, "\x93NUMPY", 6) != 0 ||
        preamble[6] < 1 || preamble[6] > 3) {
        fprintf(stderr, "%s is not a .npy file\n", path);
        goto done;
    }
    /* Format 1.0 stores the header length in 2 bytes, later formats in 4. */
    size_t length_bytes = preamble[6] == 1 ? 2 : 4;
    if (fread(preamble + 8, 1, length_bytes, file) != length_bytes) {
        fprintf(stderr, "%s: truncated .npy header\n", path);
        goto done;
    }
    size_t header_length = 0;
    for (size_t i = length_bytes; i > 0; i--) {
        header_length = header_length << 8 | preamble[8 + i - 1];
    }
    header = malloc(header_length + 1);
    if (header == NULL || fread(header, 1, header_length, file) != header_length) {
        fprintf(stderr, "%s: truncated .npy header\n", path);
        goto done;
    }
    /* The header is padded with spaces and ends in a newline: trim them for messages. */
    while (header_length > 0 && (header[header_length - 1] == ' ' || header[header_length - 1] == '\n')) {
        header_length--;
    }
    header[header_length] = '\0';
    if (strstr(header, "'descr': '<f4'") == NULL || strstr(header, "'fortran_order': False") == NULL ||
        !parse_npy_shape(header, array)) {
        fprintf(stderr, "%s: expected little-endian float32 in C order, got header %s\n", path, header);
        goto done;
    }
    size_t byte_count = array->count * sizeof(float);
    bytes = malloc(byte_count > 0 ? byte_count : 1);
    array->values = malloc(byte_count > 0 ? byte_count : 1);
    if (bytes == NULL || array->values == NULL) {
        fprintf(stderr, "out of memory reading %s\n", path);
        goto done;
    }
    if (fread(bytes, 1, byte_count, file) != byte_count) {
        fprintf(stderr, "%s: expected %zu bytes of data\n", path, byte_count);
        goto done;
    }
    /* Assembled byte by byte so the file reads the same on any host byte order. */
    for (size_t i = 0; i < array->count; i++) {
        const unsigned char *b = bytes + 4 * i;
        uint32_t word = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
        memcpy(&array->values[i], &word, sizeof word);
    }
    ok = 1;
done:
    if (!ok) {
        free(array->values);
        array->values = NULL;
    }
    free(bytes);
    free(header);
    fclose(file);
    return ok;
}

/* Prints the TOP_K largest values; ties go to the lower index. */
static void print_top(const float *values, size_t count) {
    size_t chosen[TOP_K];
    size_t chosen_count = 0;
    while (chosen_count < TOP_K && chosen_count < count) {
        size_t best = count;
        for (size_t i = 0; i < count; i++) {
            int taken = 0;
            for (size_t j = 0; j < chosen_count; j++) {
                taken |= chosen[j] == i;
            }
            if (!taken && (best == count || values[i] > values[best])) {
                best = i;
            }
        }
        chosen[chosen_count++] = best;
        printf("class %zu: %.6f\n", best, (double)values[best]);
    }
}

int main(int argc, char **argv) {
    const char *model_path = argc > 1 ? argv[1] : "examples/models/tiny_dcn.onnx";
    const char *input_path = argc > 2 ? argv[2] : "examples/models/tiny_dcn_input.npy";

    int exit_code = EXIT_FAILURE;
    drt_model *model = NULL;
    drt_session_options *options = NULL;
    drt_session *session = NULL;
    drt_tensor *input = NULL;
    drt_tensor *output = NULL;
    float_array image = {0};

    if (!read_npy(input_path, &image)) {
        goto done;
    }
    if (failed(drt_model_load_file(model_path, &model), "drt_model_load_file")) {
        goto done;
    }
    size_t output_count = 0;
    const char *input_name = NULL;
    if (failed(drt_model_output_count(model, &output_count), "drt_model_output_count") ||
        failed(drt_model_input_name(model, 0, &input_name), "drt_model_input_name")) {
        goto done;
    }
    if (output_count != 1) {
        fprintf(stderr, "expected a model with one output, got %zu\n", output_count);
        goto done;
    }
    if (failed(drt_session_options_create(&options), "drt_session_options_create") ||
        failed(drt_session_options_set_threads(options, 0), "drt_session_options_set_threads") ||
        failed(drt_session_create(model, options, &session), "drt_session_create")) {
        goto done;
    }
    /* Borrowed: the image stays untouched in our buffer until the tensor is freed. */
    if (failed(drt_tensor_create_borrowed(DRT_TYPE_FLOAT, image.shape, image.rank, image.values,
                                          image.count * sizeof(float), &input),
               "drt_tensor_create_borrowed")) {
        goto done;
    }
    const drt_tensor *inputs[1] = {input};
    if (failed(drt_session_run(session, &input_name, inputs, 1, NULL, 1, &output), "drt_session_run")) {
        goto done;
    }
    int32_t element_type = DRT_TYPE_UNDEFINED;
    size_t byte_size = 0;
    const void *data = NULL;
    if (failed(drt_tensor_element_type(output, &element_type), "drt_tensor_element_type") ||
        failed(drt_tensor_byte_size(output, &byte_size), "drt_tensor_byte_size") ||
        failed(drt_tensor_data(output, &data), "drt_tensor_data")) {
        goto done;
    }
    if (element_type != DRT_TYPE_FLOAT) {
        fprintf(stderr, "expected a float output, got element type %d\n", (int)element_type);
        goto done;
    }
    print_top(data, byte_size / sizeof(float));
    exit_code = EXIT_SUCCESS;

done:
    drt_tensor_free(output);
    drt_tensor_free(input);
    drt_session_free(session);
    drt_session_options_free(options);
    drt_model_free(model);
    free(image.values);
    return exit_code;
}
