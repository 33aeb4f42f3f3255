/*
 * A custom operator registered through the C API: the model examples/models/space_to_depth_custom.onnx
 * (made by tools/make_custom_op_model.py) uses com.example::SpaceToDepth2, which DeformRT does not
 * have. This program supplies it (what ONNX SpaceToDepth with blocksize 2 computes), runs the model
 * on a made-up input and prints the output's shape, its sum and its first values.
 *
 *   usage: custom-op-example [MODEL.onnx [N H W]]     (defaults: the bundled model, 2 8 6)
 *
 * Build: cc -std=c99 -Iinclude examples/c/custom_op.c -L.build/release -ldeformrt -lm
 * An odd H or W is refused by the operator's shape callback: the run fails with its status.
 */
#include <deformrt.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Output shape: [N, 4C, H/2, W/2] for a float [N, C, H, W] input with even H and W. */
static drt_status space_to_depth_shape(void *user_data, size_t input_count, const int32_t *input_types,
                                       const int64_t *const *input_shapes, const size_t *input_ranks,
                                       size_t output_count, size_t max_rank, int32_t *output_types,
                                       int64_t *const *output_shapes, size_t *output_ranks) {
    (void)user_data;
    if (input_count != 1 || output_count != 1 || max_rank < 4) return DRT_ERROR_INVALID_MODEL;
    if (input_types[0] != DRT_TYPE_FLOAT) return DRT_ERROR_UNSUPPORTED;
    const int64_t *in = input_shapes[0];
    if (input_ranks[0] != 4 || in[2] % 2 != 0 || in[3] % 2 != 0) return DRT_ERROR_INVALID_ARGUMENT;
    output_types[0] = DRT_TYPE_FLOAT;
    output_ranks[0] = 4;
    output_shapes[0][0] = in[0];
    output_shapes[0][1] = in[1] * 4;
    output_shapes[0][2] = in[2] / 2;
    output_shapes[0][3] = in[3] / 2;
    return DRT_OK;
}

/* y[n, (dy * 2 + dx) * C + c, h, w] = x[n, c, 2h + dy, 2w + dx] (ONNX SpaceToDepth, DCR order). */
static drt_status space_to_depth_compute(void *user_data, const drt_tensor *const *inputs, size_t input_count,
                                         drt_tensor *const *outputs, size_t output_count) {
    (void)user_data;
    if (input_count != 1 || output_count != 1) return DRT_ERROR_INVALID_MODEL;
    int64_t dims[4];
    size_t rank = 0;
    const void *in_data = NULL;
    void *out_data = NULL;
    drt_status status = drt_tensor_shape(inputs[0], dims, 4, &rank);
    if (status == DRT_OK) status = drt_tensor_data(inputs[0], &in_data);
    if (status == DRT_OK) status = drt_tensor_mutable_data(outputs[0], &out_data);
    if (status != DRT_OK) return status;
    const float *x = in_data;
    float *y = out_data;
    int64_t n_count = dims[0], channels = dims[1], height = dims[2], width = dims[3];
    int64_t out_h = height / 2, out_w = width / 2;
    for (int64_t n = 0; n < n_count; n++)
        for (int64_t dy = 0; dy < 2; dy++)
            for (int64_t dx = 0; dx < 2; dx++)
                for (int64_t c = 0; c < channels; c++)
                    for (int64_t h = 0; h < out_h; h++)
                        for (int64_t w = 0; w < out_w; w++) {
                            int64_t oc = (dy * 2 + dx) * channels + c;
                            y[((n * channels * 4 + oc) * out_h + h) * out_w + w] =
                                x[((n * channels + c) * height + 2 * h + dy) * width + 2 * w + dx];
                        }
    return DRT_OK;
}

static int failed(drt_status status, const char *call) {
    if (status == DRT_OK) return 0;
    fprintf(stderr, "%s failed: %s (%s)\n", call, drt_last_error_message(), drt_status_string(status));
    return 1;
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "examples/models/space_to_depth_custom.onnx";
    int64_t n = argc > 4 ? atoll(argv[2]) : 2, h = argc > 4 ? atoll(argv[3]) : 8, w = argc > 4 ? atoll(argv[4]) : 6;
    if (n < 1 || h < 1 || w < 1 || n * h * w > (1 << 24)) {
        fprintf(stderr, "N H W must be positive and not huge\n");
        return 2;
    }
    int code = 1;
    drt_model *model = NULL;
    drt_custom_op *op = NULL;
    drt_session_options *options = NULL;
    drt_session *session = NULL;
    drt_tensor *input = NULL, *output = NULL;
    float *pixels = NULL;

    if (failed(drt_model_load_file(path, &model), "drt_model_load_file")) goto done;
    if (failed(drt_custom_op_create("com.example", "SpaceToDepth2", 1, 1, space_to_depth_shape, space_to_depth_compute,
                                    NULL, &op), "drt_custom_op_create")) goto done;
    if (failed(drt_session_options_create(&options), "drt_session_options_create")) goto done;
    if (failed(drt_session_options_add_custom_op(options, op), "drt_session_options_add_custom_op")) goto done;
    drt_custom_op_free(op);  /* the options keep what they need */
    op = NULL;
    if (failed(drt_session_create(model, options, &session), "drt_session_create")) goto done;

    size_t count = (size_t)(n * 3 * h * w);
    pixels = malloc(count * sizeof(float));
    if (pixels == NULL) goto done;
    for (size_t i = 0; i < count; i++) pixels[i] = (float)sin(0.37 * (double)i);
    int64_t shape[4] = {n, 3, h, w};
    if (failed(drt_tensor_create_borrowed(DRT_TYPE_FLOAT, shape, 4, pixels, count * sizeof(float), &input),
               "drt_tensor_create_borrowed")) goto done;
    const char *names[1] = {"x"};
    const drt_tensor *inputs[1] = {input};
    if (failed(drt_session_run(session, names, inputs, 1, NULL, 1, &output), "drt_session_run")) goto done;

    int64_t dims[4];
    size_t rank = 0;
    const void *data = NULL;
    if (failed(drt_tensor_shape(output, dims, 4, &rank), "drt_tensor_shape")) goto done;
    if (failed(drt_tensor_data(output, &data), "drt_tensor_data")) goto done;
    const float *y = data;
    size_t total = (size_t)(dims[0] * dims[1] * dims[2] * dims[3]);
    double sum = 0;
    for (size_t i = 0; i < total; i++) sum += y[i];
    printf("shape %lld %lld %lld %lld\n", (long long)dims[0], (long long)dims[1], (long long)dims[2], (long long)dims[3]);
    printf("sum %.6f\n", sum);
    printf("first");
    for (size_t i = 0; i < 8 && i < total; i++) printf(" %.6f", y[i]);
    printf("\n");
    code = 0;

done:
    drt_tensor_free(output);
    drt_tensor_free(input);
    free(pixels);
    drt_session_free(session);
    drt_session_options_free(options);
    drt_custom_op_free(op);
    drt_model_free(model);
    return code;
}
