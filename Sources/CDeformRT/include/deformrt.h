/*
 * deformrt.h - the C interface of DeformRT, an inference runtime for ONNX models with deformable
 * convolutions and deformable RoI pooling.
 *
 * Conventions
 *   - Every fallible call returns a drt_status (DRT_OK = 0) and hands results back through out_*
 *     parameters, which come last. On failure the out_* parameters are left untouched (except that
 *     the shape calls report the rank needed with DRT_ERROR_BUFFER_TOO_SMALL) and
 *     drt_last_error_message() describes the failure.
 *   - Every object made by a _create or _load call is freed with the matching _free call.
 *     Passing NULL to a _free call does nothing.
 *   - A handle that is NULL, already freed or not made by this library is answered with
 *     DRT_ERROR_INVALID_ARGUMENT wherever the library can tell (it keeps a registry of live handles).
 *   - Element types are the ONNX TensorProto codes (DRT_TYPE_FLOAT = 1, ...).
 *   - Strings are NUL-terminated UTF-8.
 *
 * Thread safety
 *   - drt_model: immutable once loaded; any number of threads and sessions may share it.
 *   - drt_session: drt_session_run serialises calls on the same session (a second thread waits for
 *     the first); different sessions run fully in parallel. A session keeps what it needs of its
 *     model, so models and sessions may be freed in any order.
 *   - drt_tensor: not synchronised; do not free a tensor while another thread reads it.
 *   - drt_last_error_message(): per thread.
 *
 * ABI
 *   Status codes and element types are only ever appended. abi/symbols.txt lists every exported
 *   symbol; symbols are only ever appended to it.
 */
#ifndef DEFORMRT_H
#define DEFORMRT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DRT_VERSION_MAJOR 0
#define DRT_VERSION_MINOR 1
#define DRT_VERSION_PATCH 0

/* Result of every fallible call. Codes are only ever appended. */
typedef enum drt_status {
    DRT_OK = 0,
    DRT_ERROR_INVALID_ARGUMENT = 1, /* NULL, freed or foreign handle; bad name, type, shape or size */
    DRT_ERROR_IO = 2,               /* a file could not be opened or read */
    DRT_ERROR_INVALID_MODEL = 3,    /* the model file is malformed or inconsistent */
    DRT_ERROR_UNSUPPORTED = 4,      /* valid ONNX that this runtime does not implement */
    DRT_ERROR_OUT_OF_MEMORY = 5,    /* an allocation failed or the session's memory limit was hit */
    DRT_ERROR_BUFFER_TOO_SMALL = 6, /* a caller buffer is too small; the size needed was reported */
    DRT_ERROR_INTERNAL = 7          /* a bug in DeformRT: please report it */
} drt_status;

/* ONNX TensorProto element type codes understood by the tensor calls. */
typedef enum drt_element_type {
    DRT_TYPE_UNDEFINED = 0,
    DRT_TYPE_FLOAT = 1,
    DRT_TYPE_UINT8 = 2,
    DRT_TYPE_INT8 = 3,
    DRT_TYPE_UINT16 = 4,
    DRT_TYPE_INT16 = 5,
    DRT_TYPE_INT32 = 6,
    DRT_TYPE_INT64 = 7,
    DRT_TYPE_STRING = 8, /* appears in metadata only; string tensors cannot be created or run */
    DRT_TYPE_BOOL = 9,   /* one byte per element, 0 or 1 */
    DRT_TYPE_FLOAT16 = 10,
    DRT_TYPE_DOUBLE = 11,
    DRT_TYPE_UINT32 = 12,
    DRT_TYPE_UINT64 = 13
} drt_element_type;

typedef struct drt_model drt_model;
typedef struct drt_session_options drt_session_options;
typedef struct drt_session drt_session;
typedef struct drt_tensor drt_tensor;

/* ---- Library ------------------------------------------------------------------------------ */

/* The library's version as "MAJOR.MINOR.PATCH". Static storage: never free it. */
const char *drt_version(void);

/* A short static description of a status code ("unknown status" for codes this version does not
 * know). Never free it. */
const char *drt_status_string(drt_status status);

/* The message of the last failed call on this thread, or "" if none failed yet. Borrowed: valid
 * until the next failing call on this thread. Never free it. */
const char *drt_last_error_message(void);

/* ---- Model -------------------------------------------------------------------------------- */

/* Loads an ONNX model from a file. External data files are resolved relative to the model's
 * folder and must stay inside it. On success *out_model is owned by the caller; free it with
 * drt_model_free. */
drt_status drt_model_load_file(const char *path, drt_model **out_model);

/* Loads an ONNX model from memory (the bytes are copied; the buffer may be freed afterwards).
 * A model loaded this way cannot refer to external data. On success *out_model is owned by the
 * caller; free it with drt_model_free. */
drt_status drt_model_load_memory(const void *data, size_t size, drt_model **out_model);

/* Releases the caller's reference. Sessions made from the model stay valid. NULL: no-op. */
void drt_model_free(drt_model *model);

/* Number of graph inputs the caller feeds (initializers are not counted). */
drt_status drt_model_input_count(const drt_model *model, size_t *out_count);

/* Number of graph outputs. */
drt_status drt_model_output_count(const drt_model *model, size_t *out_count);

/* Name of input / output `index`. Borrowed: valid until the model is freed. */
drt_status drt_model_input_name(const drt_model *model, size_t index, const char **out_name);
drt_status drt_model_output_name(const drt_model *model, size_t index, const char **out_name);

/* Element type (drt_element_type code) of input / output `index`; DRT_TYPE_UNDEFINED if the
 * model does not say. */
drt_status drt_model_input_element_type(const drt_model *model, size_t index, int32_t *out_type);
drt_status drt_model_output_element_type(const drt_model *model, size_t index, int32_t *out_type);

/* Declared shape of input / output `index`, with -1 for a dynamic (symbolic or missing) dim.
 * Writes the rank to *out_rank and, if capacity >= rank, the dims to out_dims. If capacity < rank
 * it returns DRT_ERROR_BUFFER_TOO_SMALL (out_dims may be NULL when capacity is 0). A model that
 * declares no shape at all reports rank 0 and element type as declared. */
drt_status drt_model_input_shape(const drt_model *model, size_t index, int64_t *out_dims,
                                 size_t capacity, size_t *out_rank);
drt_status drt_model_output_shape(const drt_model *model, size_t index, int64_t *out_dims,
                                  size_t capacity, size_t *out_rank);

/* ---- Session options ---------------------------------------------------------------------- */

/* Defaults: as many threads as the machine has cores; a 16 GiB cap on tensor memory.
 * On success *out_options is owned by the caller; free it with drt_session_options_free. */
drt_status drt_session_options_create(drt_session_options **out_options);

/* Threads one run may use: 1..256, or 0 for the default (the number of cores). */
drt_status drt_session_options_set_threads(drt_session_options *options, int32_t threads);

/* Cap on the bytes of tensor memory one session plans (intermediates, workspace, outputs); a plan
 * over it fails with DRT_ERROR_OUT_OF_MEMORY before anything is allocated. 0 restores the default. */
drt_status drt_session_options_set_memory_limit(drt_session_options *options, uint64_t bytes);

/* Graph optimisation levels, numbered as onnxruntime's. */
typedef enum drt_graph_optimization_level {
    DRT_GRAPH_OPTIMIZATION_DISABLED = 0, /* the graph runs as imported */
    DRT_GRAPH_OPTIMIZATION_BASIC = 1,    /* constant folding; Identity, Dropout and dead nodes removed */
    DRT_GRAPH_OPTIMIZATION_EXTENDED = 2, /* + BatchNormalization and per-channel Mul / Add folded into the
                                            convolution (BatchNormalization also into the Gemm) before
                                            them; residual Add and activation fused
                                            into the convolution's epilogue; a DCNv2's offset / mask
                                            Slices and Sigmoid read from its offset convolution */
    DRT_GRAPH_OPTIMIZATION_ALL = 99      /* + activations kept channels-last between convolutions,
                                            pooling, elementwise ops and Concat (the default) */
} drt_graph_optimization_level;

/* Which graph passes run when a session is made: a drt_graph_optimization_level value (anything
 * else is DRT_ERROR_INVALID_ARGUMENT). Outputs agree across levels within float rounding (folding
 * reassociates a few multiplications). */
drt_status drt_session_options_set_graph_optimization_level(drt_session_options *options, int32_t level);

/* Per-node profiling, off by default. With a file_prefix, every run records one event per node
 * (name, op type, input and output shapes, the model nodes fused into it, FLOPs where known,
 * duration) and one per run; drt_session_end_profiling writes them to
 * "<file_prefix>_<YYYY-MM-DD_HH-MM-SS>.json" as a Chrome-trace JSON array (chrome://tracing,
 * Perfetto; the layout of onnxruntime's profiles). NULL turns profiling off; "" is
 * DRT_ERROR_INVALID_ARGUMENT. A session that does not profile pays one branch per run. At most
 * 2^20 events are kept. */
drt_status drt_session_options_set_profiling(drt_session_options *options, const char *file_prefix);

/* NULL: no-op. */
void drt_session_options_free(drt_session_options *options);

/* ---- Session ------------------------------------------------------------------------------ */

/* Checks the graph (cycles, values nobody produces, duplicate names, unsupported ops: every one
 * is listed) and prepares it to run. options may be NULL for the defaults; it is copied, so it
 * may be freed afterwards. The session keeps what it needs of the model, so the model may be
 * freed at any time (doing so right away releases weights the graph passes replaced). On success
 * *out_session is owned by the caller; free it with drt_session_free. */
drt_status drt_session_create(const drt_model *model, const drt_session_options *options,
                              drt_session **out_session);

/* NULL: no-op. */
void drt_session_free(drt_session *session);

/* Runs the model.
 *   input_names[i] names the graph input fed by inputs[i], for i < input_count; every graph input
 *   must be fed exactly once. Input tensors are only read during the call.
 *   output_names selects output_count outputs by name; if output_names is NULL, output_count must
 *   equal drt_model_output_count and all outputs are returned in graph order.
 *   out_outputs must have room for output_count pointers. On success each out_outputs[i] is owned
 *   by the caller; free it with drt_tensor_free. On failure nothing is written to out_outputs.
 * A call with new input shapes re-plans the session (dynamic batch or spatial size). */
drt_status drt_session_run(drt_session *session, const char *const *input_names,
                           const drt_tensor *const *inputs, size_t input_count,
                           const char *const *output_names, size_t output_count,
                           drt_tensor **out_outputs);

/* Writes the profile recorded so far (see drt_session_options_set_profiling) and stops profiling
 * for the rest of the session's life. *out_path is the file's path, or "" when the session does
 * not profile (as onnxruntime); it is owned by the session and valid until the next call of this
 * function on it or drt_session_free. An unwritable file is DRT_ERROR_INVALID_ARGUMENT naming it.
 * Thread-safe with drt_session_run (it waits for a run in progress). */
drt_status drt_session_end_profiling(drt_session *session, const char **out_path);

/* ---- Tensor ------------------------------------------------------------------------------- */

/* Makes a tensor holding a copy of `data`. data_size must equal the element count times the
 * element size (data may be NULL when that is 0). Dims must be >= 0. On success *out_tensor is
 * owned by the caller; free it with drt_tensor_free. */
drt_status drt_tensor_create(int32_t element_type, const int64_t *shape, size_t rank,
                             const void *data, size_t data_size, drt_tensor **out_tensor);

/* Makes a tensor that borrows `data` without copying: the caller keeps the memory valid and
 * unchanged until the tensor is freed. Otherwise as drt_tensor_create. */
drt_status drt_tensor_create_borrowed(int32_t element_type, const int64_t *shape, size_t rank,
                                      const void *data, size_t data_size, drt_tensor **out_tensor);

/* NULL: no-op. Borrowed memory is not freed. */
void drt_tensor_free(drt_tensor *tensor);

/* Pointer to the elements (row-major). Borrowed: valid until the tensor is freed. */
drt_status drt_tensor_data(const drt_tensor *tensor, const void **out_data);

/* Element type (drt_element_type code). */
drt_status drt_tensor_element_type(const drt_tensor *tensor, int32_t *out_type);

/* Number of dims. */
drt_status drt_tensor_rank(const drt_tensor *tensor, size_t *out_rank);

/* Writes the rank to *out_rank and, if capacity >= rank, the dims to out_dims; otherwise returns
 * DRT_ERROR_BUFFER_TOO_SMALL. */
drt_status drt_tensor_shape(const drt_tensor *tensor, int64_t *out_dims, size_t capacity,
                            size_t *out_rank);

/* Size of the data in bytes. */
drt_status drt_tensor_byte_size(const drt_tensor *tensor, size_t *out_size);

#ifdef __cplusplus
}
#endif

#endif /* DEFORMRT_H */
