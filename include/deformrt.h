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
    DRT_ERROR_INTERNAL = 7,         /* a bug in DeformRT: please report it */
    DRT_ERROR_CANCELLED = 8         /* the run was stopped through its drt_run_options */
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

/* ==== Added after the first release (issue 11); new calls are appended below ================ */

/* ---- Model metadata ----------------------------------------------------------------------- */

/* What the model file says about itself (the ModelProto and GraphProto fields of the same names;
 * onnxruntime's ModelMetadata). Each string is "" when the file does not set it. Borrowed: valid
 * until the model is freed. Thread-safe (a model is immutable). */
drt_status drt_model_producer_name(const drt_model *model, const char **out_value);
drt_status drt_model_producer_version(const drt_model *model, const char **out_value);
drt_status drt_model_domain(const drt_model *model, const char **out_value);
/* ModelProto.doc_string. */
drt_status drt_model_description(const drt_model *model, const char **out_value);
drt_status drt_model_graph_name(const drt_model *model, const char **out_value);
/* GraphProto.doc_string. */
drt_status drt_model_graph_description(const drt_model *model, const char **out_value);
/* ModelProto.model_version; INT64_MAX when the file does not set it (as onnxruntime reports). */
drt_status drt_model_version(const drt_model *model, int64_t *out_version);

/* The custom metadata (ModelProto.metadata_props) as key / value pairs, each key once, in file
 * order (a key the file repeats has its last value, as onnxruntime reads it). Keys and values are
 * borrowed: valid until the model is freed. */
drt_status drt_model_metadata_count(const drt_model *model, size_t *out_count);
drt_status drt_model_metadata_key(const drt_model *model, size_t index, const char **out_key);
/* The value of `key`; a key the model does not have is DRT_ERROR_INVALID_ARGUMENT naming it
 * (*out_value untouched). */
drt_status drt_model_metadata_lookup(const drt_model *model, const char *key, const char **out_value);

/* The symbolic name (ONNX dim_param, such as "batch") of dim `axis` of input / output `index`'s
 * declared shape, or "" when that dim is a number or has no name. An axis not below the rank
 * drt_model_input_shape reports is DRT_ERROR_INVALID_ARGUMENT. Borrowed: valid until the model is
 * freed. */
drt_status drt_model_input_dim_name(const drt_model *model, size_t index, size_t axis, const char **out_name);
drt_status drt_model_output_dim_name(const drt_model *model, size_t index, size_t axis, const char **out_name);

/* ---- Extra outputs ------------------------------------------------------------------------ */

/* Asks sessions made with these options to offer the intermediate value `name` (any node output,
 * graph input or initializer of the model) as an output as well, for debugging or for reading a
 * layer's activations: drt_session_run can then name it in output_names. The graph passes keep
 * every such value (no fusion or layout change removes it; it may cost some speed). Extra outputs
 * follow the model's outputs and are only returned when named (output_names NULL still means the
 * model's outputs). A name the model lacks, or one that is already an output, makes
 * drt_session_create fail with DRT_ERROR_INVALID_ARGUMENT. The name is copied. */
drt_status drt_session_options_add_output(drt_session_options *options, const char *name);

/* ---- Run options and cancellation --------------------------------------------------------- */

typedef struct drt_run_options drt_run_options;

/* Options for one or more runs (onnxruntime's RunOptions). Default: terminate off. On success
 * *out_options is owned by the caller; free it with drt_run_options_free. Thread safety: any
 * number of runs, on any sessions and threads, may use one run options at the same time, and
 * drt_run_options_set_terminate may be called from any thread at any time (that is its purpose).
 * Free it only when no run uses it. */
drt_status drt_run_options_create(drt_run_options **out_options);

/* NULL: no-op. */
void drt_run_options_free(drt_run_options *options);

/* terminate != 0 asks every run using these options to stop: a run checks before each node (one
 * relaxed atomic load) and returns DRT_ERROR_CANCELLED, writing no output; a run started while it
 * is set stops before its first node. It stays set until called again with 0. The session stays
 * usable. */
drt_status drt_run_options_set_terminate(drt_run_options *options, int32_t terminate);

/* drt_session_run with run options and, optionally, caller-provided output tensors.
 *   run_options may be NULL (no cancellation).
 *   outputs has room for output_count pointers. outputs[i] NULL on entry: as drt_session_run, the
 *   library makes the tensor (caller owns it; free with drt_tensor_free). outputs[i] non-NULL: a
 *   tensor of the caller's (drt_tensor_create or drt_tensor_create_borrowed, for example over a
 *   buffer it already has) whose element type and shape must equal output i's for these input
 *   shapes; the output is written into its memory, and outputs[i] is left as it is (still the
 *   caller's). Such a tensor must not share memory with an input or another output tensor
 *   (DRT_ERROR_INVALID_ARGUMENT), and must not be read or freed by another thread during the call.
 *   A computed output is written straight into the caller's memory (no copy).
 * On failure no NULL entry of outputs is written; a caller tensor's contents are unspecified after
 * a failure that happened during the run (DRT_ERROR_CANCELLED included), and untouched after a
 * refused argument. Everything else as drt_session_run. */
drt_status drt_session_run_with_options(drt_session *session, const drt_run_options *run_options,
                                        const char *const *input_names, const drt_tensor *const *inputs,
                                        size_t input_count, const char *const *output_names,
                                        size_t output_count, drt_tensor **outputs);

/* ---- Custom operators --------------------------------------------------------------------- */

typedef struct drt_custom_op drt_custom_op;

/* A custom operator's output types and shapes for its inputs' types and shapes. Called whenever a
 * plan is made (drt_session_create when the inputs' shapes are static; a run with new input shapes),
 * on the thread making it, while that session is locked.
 *   input_types[i] and the input_ranks[i] dims at input_shapes[i] describe input i; an omitted
 *   optional input has DRT_TYPE_UNDEFINED and rank 0. The arrays are valid during the call only.
 *   For each of the node's output_count outputs, write its element type to output_types[i], its
 *   rank (at most max_rank) to output_ranks[i] and its dims (>= 0) to output_shapes[i][0..rank).
 * Return DRT_OK, or another status to refuse the inputs: the session creation or run then fails with
 * that status and a message naming the node. Output types and shapes that DeformRT cannot hold (an
 * unknown or string type, a negative dim, a rank over max_rank, too many elements) fail it with
 * DRT_ERROR_INVALID_ARGUMENT naming the node and the output. */
typedef drt_status (*drt_custom_op_shape_fn)(void *user_data, size_t input_count, const int32_t *input_types,
                                             const int64_t *const *input_shapes, const size_t *input_ranks,
                                             size_t output_count, size_t max_rank, int32_t *output_types,
                                             int64_t *const *output_shapes, size_t *output_ranks);

/* Computes a custom node: reads inputs[i] (NULL for an omitted optional input; read-only) and writes
 * every element of outputs[i], tensors of the types and shapes the shape callback gave
 * (drt_tensor_mutable_data gives their memory). The tensor handles are lent for the call only: do
 * not free or keep them. Called during drt_session_run on the thread that called it (one call at a
 * time per session; different sessions may call it at the same time), and possibly once while a
 * plan is made when all the node's inputs are constants (the result is then reused by every run).
 * Return DRT_OK, or another status to fail the run with that status and a message naming the
 * node. Must not call drt_session_run on the session running it. */
typedef drt_status (*drt_custom_op_compute_fn)(void *user_data, const drt_tensor *const *inputs, size_t input_count,
                                               drt_tensor *const *outputs, size_t output_count);

/* Describes a custom operator: nodes of (domain, op_type) in models whose opset for `domain` (1 if
 * the model does not import it) is in since_version..until_version run the callbacks, which get
 * user_data as their first argument. The ONNX domain ("" or "ai.onnx") and "ai.deformrt" are
 * refused, and so is a name DeformRT runs itself (drt_session_create says so). Node attributes are
 * not passed to the callbacks. domain and op_type are copied. On success *out_op is owned by the
 * caller; free it with drt_custom_op_free. Lifetime: options and sessions keep what they need of
 * the drt_custom_op, so it may be freed at once, but user_data must stay valid until every session
 * made with it is freed. */
drt_status drt_custom_op_create(const char *domain, const char *op_type, int32_t since_version, int32_t until_version,
                                drt_custom_op_shape_fn shape, drt_custom_op_compute_fn compute, void *user_data,
                                drt_custom_op **out_op);

/* NULL: no-op. */
void drt_custom_op_free(drt_custom_op *op);

/* Sessions made with these options run `op` for the nodes it matches. Registering the same
 * (domain, op_type) twice for overlapping opset ranges makes drt_session_create fail. */
drt_status drt_session_options_add_custom_op(drt_session_options *options, const drt_custom_op *op);

/* Pointer to the elements of a tensor, for writing: a custom operator's outputs, or a tensor the
 * caller made. The inputs lent to a custom operator are refused (DRT_ERROR_INVALID_ARGUMENT).
 * Borrowed: valid until the tensor is freed (for lent tensors: until the callback returns). */
drt_status drt_tensor_mutable_data(drt_tensor *tensor, void **out_data);

/* ---- CPU tier ----------------------------------------------------------------------------- */

/* The instruction-set tier the library runs on: "baseline" (x86-64-v2: SSE4.2), "avx2"
 * (x86-64-v3: AVX2 + FMA) or "avx512" (x86-64-v4: AVX-512 F/CD/BW/DQ/VL). The shipped library holds
 * the engine once per tier and picks one once, when it is loaded: the widest the CPU supports, or
 * the one the environment variable DEFORMRT_CPU=baseline|avx2|avx512 names. A library built
 * without the Makefile (plain `swift build`) has one tier, "generic", and ignores DEFORMRT_CPU.
 * Static storage: never free *out_name.
 * Fails with DRT_ERROR_UNSUPPORTED when DEFORMRT_CPU names a tier this CPU lacks or the CPU is below
 * x86-64-v2, and with DRT_ERROR_INVALID_ARGUMENT when DEFORMRT_CPU names no tier; in both cases
 * drt_model_load_file, drt_model_load_memory and drt_session_create fail the same way, while the
 * calls that run no model (version, status text, tensors) keep working on the baseline tier. */
drt_status drt_cpu_tier(const char **out_name);

#ifdef __cplusplus
}
#endif

#endif /* DEFORMRT_H */
