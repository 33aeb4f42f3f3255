"""ctypes mirror of include/deformrt.h, one binding per C declaration, in the header's order.

Nothing here adds behaviour: session.py builds the Python API on top of these functions. Each
function is a module attribute, looked up at call time, so tests may wrap one to observe calls.
"""

from __future__ import annotations

import ctypes
from ctypes import POINTER, c_char_p, c_int32, c_size_t, c_uint64, c_void_p
from enum import IntEnum

from . import _lib

library = _lib.load()

# #define DRT_VERSION_MAJOR 0
# #define DRT_VERSION_MINOR 1
# #define DRT_VERSION_PATCH 0
DRT_VERSION_MAJOR = 0
DRT_VERSION_MINOR = 1
DRT_VERSION_PATCH = 0


# typedef enum drt_status { ... } drt_status;
class Status(IntEnum):
    OK = 0
    INVALID_ARGUMENT = 1
    IO = 2
    INVALID_MODEL = 3
    UNSUPPORTED = 4
    OUT_OF_MEMORY = 5
    BUFFER_TOO_SMALL = 6
    INTERNAL = 7
    CANCELLED = 8


# typedef enum drt_element_type { ... } drt_element_type;
class ElementType(IntEnum):
    UNDEFINED = 0
    FLOAT = 1
    UINT8 = 2
    INT8 = 3
    UINT16 = 4
    INT16 = 5
    INT32 = 6
    INT64 = 7
    STRING = 8
    BOOL = 9
    FLOAT16 = 10
    DOUBLE = 11
    UINT32 = 12
    UINT64 = 13


# typedef enum drt_graph_optimization_level { ... } drt_graph_optimization_level;
class GraphOptimization(IntEnum):
    DISABLED = 0
    BASIC = 1
    EXTENDED = 2
    ALL = 99


# The C enums are passed and returned as int.
drt_status = ctypes.c_int


# typedef struct drt_model drt_model;
class drt_model(ctypes.Structure):
    pass


# typedef struct drt_session_options drt_session_options;
class drt_session_options(ctypes.Structure):
    pass


# typedef struct drt_session drt_session;
class drt_session(ctypes.Structure):
    pass


# typedef struct drt_tensor drt_tensor;
class drt_tensor(ctypes.Structure):
    pass


def _bind(name, restype, *argtypes):
    function = getattr(library, name)
    function.restype = restype
    function.argtypes = list(argtypes)
    return function


# ---- Library ----

# const char *drt_version(void);
drt_version = _bind("drt_version", c_char_p)

# const char *drt_status_string(drt_status status);
drt_status_string = _bind("drt_status_string", c_char_p, drt_status)

# const char *drt_last_error_message(void);
drt_last_error_message = _bind("drt_last_error_message", c_char_p)

# ---- Model ----

# drt_status drt_model_load_file(const char *path, drt_model **out_model);
drt_model_load_file = _bind(
    "drt_model_load_file", drt_status, c_char_p, POINTER(POINTER(drt_model)))

# drt_status drt_model_load_memory(const void *data, size_t size, drt_model **out_model);
drt_model_load_memory = _bind(
    "drt_model_load_memory", drt_status, c_void_p, c_size_t, POINTER(POINTER(drt_model)))

# void drt_model_free(drt_model *model);
drt_model_free = _bind("drt_model_free", None, POINTER(drt_model))

# drt_status drt_model_input_count(const drt_model *model, size_t *out_count);
drt_model_input_count = _bind(
    "drt_model_input_count", drt_status, POINTER(drt_model), POINTER(c_size_t))

# drt_status drt_model_output_count(const drt_model *model, size_t *out_count);
drt_model_output_count = _bind(
    "drt_model_output_count", drt_status, POINTER(drt_model), POINTER(c_size_t))

# drt_status drt_model_input_name(const drt_model *model, size_t index, const char **out_name);
drt_model_input_name = _bind(
    "drt_model_input_name", drt_status, POINTER(drt_model), c_size_t, POINTER(c_char_p))

# drt_status drt_model_output_name(const drt_model *model, size_t index, const char **out_name);
drt_model_output_name = _bind(
    "drt_model_output_name", drt_status, POINTER(drt_model), c_size_t, POINTER(c_char_p))

# drt_status drt_model_input_element_type(const drt_model *model, size_t index, int32_t *out_type);
drt_model_input_element_type = _bind(
    "drt_model_input_element_type", drt_status, POINTER(drt_model), c_size_t, POINTER(c_int32))

# drt_status drt_model_output_element_type(const drt_model *model, size_t index, int32_t *out_type);
drt_model_output_element_type = _bind(
    "drt_model_output_element_type", drt_status, POINTER(drt_model), c_size_t, POINTER(c_int32))

# drt_status drt_model_input_shape(const drt_model *model, size_t index, int64_t *out_dims,
#                                  size_t capacity, size_t *out_rank);
drt_model_input_shape = _bind(
    "drt_model_input_shape", drt_status, POINTER(drt_model), c_size_t,
    POINTER(ctypes.c_int64), c_size_t, POINTER(c_size_t))

# drt_status drt_model_output_shape(const drt_model *model, size_t index, int64_t *out_dims,
#                                   size_t capacity, size_t *out_rank);
drt_model_output_shape = _bind(
    "drt_model_output_shape", drt_status, POINTER(drt_model), c_size_t,
    POINTER(ctypes.c_int64), c_size_t, POINTER(c_size_t))

# ---- Session options ----

# drt_status drt_session_options_create(drt_session_options **out_options);
drt_session_options_create = _bind(
    "drt_session_options_create", drt_status, POINTER(POINTER(drt_session_options)))

# drt_status drt_session_options_set_threads(drt_session_options *options, int32_t threads);
drt_session_options_set_threads = _bind(
    "drt_session_options_set_threads", drt_status, POINTER(drt_session_options), c_int32)

# drt_status drt_session_options_set_memory_limit(drt_session_options *options, uint64_t bytes);
drt_session_options_set_memory_limit = _bind(
    "drt_session_options_set_memory_limit", drt_status, POINTER(drt_session_options), c_uint64)

# drt_status drt_session_options_set_graph_optimization_level(drt_session_options *options, int32_t level);
drt_session_options_set_graph_optimization_level = _bind(
    "drt_session_options_set_graph_optimization_level", drt_status, POINTER(drt_session_options), c_int32)

# drt_status drt_session_options_set_profiling(drt_session_options *options, const char *file_prefix);
drt_session_options_set_profiling = _bind(
    "drt_session_options_set_profiling", drt_status, POINTER(drt_session_options), c_char_p)

# void drt_session_options_free(drt_session_options *options);
drt_session_options_free = _bind(
    "drt_session_options_free", None, POINTER(drt_session_options))

# ---- Session ----

# drt_status drt_session_create(const drt_model *model, const drt_session_options *options,
#                               drt_session **out_session);
drt_session_create = _bind(
    "drt_session_create", drt_status, POINTER(drt_model), POINTER(drt_session_options),
    POINTER(POINTER(drt_session)))

# void drt_session_free(drt_session *session);
drt_session_free = _bind("drt_session_free", None, POINTER(drt_session))

# drt_status drt_session_run(drt_session *session, const char *const *input_names,
#                            const drt_tensor *const *inputs, size_t input_count,
#                            const char *const *output_names, size_t output_count,
#                            drt_tensor **out_outputs);
drt_session_run = _bind(
    "drt_session_run", drt_status, POINTER(drt_session), POINTER(c_char_p),
    POINTER(POINTER(drt_tensor)), c_size_t, POINTER(c_char_p), c_size_t,
    POINTER(POINTER(drt_tensor)))

# drt_status drt_session_end_profiling(drt_session *session, const char **out_path);
drt_session_end_profiling = _bind(
    "drt_session_end_profiling", drt_status, POINTER(drt_session), POINTER(c_char_p))

# ---- Tensor ----

# drt_status drt_tensor_create(int32_t element_type, const int64_t *shape, size_t rank,
#                              const void *data, size_t data_size, drt_tensor **out_tensor);
drt_tensor_create = _bind(
    "drt_tensor_create", drt_status, c_int32, POINTER(ctypes.c_int64), c_size_t, c_void_p,
    c_size_t, POINTER(POINTER(drt_tensor)))

# drt_status drt_tensor_create_borrowed(int32_t element_type, const int64_t *shape, size_t rank,
#                                       const void *data, size_t data_size, drt_tensor **out_tensor);
drt_tensor_create_borrowed = _bind(
    "drt_tensor_create_borrowed", drt_status, c_int32, POINTER(ctypes.c_int64), c_size_t,
    c_void_p, c_size_t, POINTER(POINTER(drt_tensor)))

# void drt_tensor_free(drt_tensor *tensor);
drt_tensor_free = _bind("drt_tensor_free", None, POINTER(drt_tensor))

# drt_status drt_tensor_data(const drt_tensor *tensor, const void **out_data);
drt_tensor_data = _bind(
    "drt_tensor_data", drt_status, POINTER(drt_tensor), POINTER(c_void_p))

# drt_status drt_tensor_element_type(const drt_tensor *tensor, int32_t *out_type);
drt_tensor_element_type = _bind(
    "drt_tensor_element_type", drt_status, POINTER(drt_tensor), POINTER(c_int32))

# drt_status drt_tensor_rank(const drt_tensor *tensor, size_t *out_rank);
drt_tensor_rank = _bind(
    "drt_tensor_rank", drt_status, POINTER(drt_tensor), POINTER(c_size_t))

# drt_status drt_tensor_shape(const drt_tensor *tensor, int64_t *out_dims, size_t capacity,
#                             size_t *out_rank);
drt_tensor_shape = _bind(
    "drt_tensor_shape", drt_status, POINTER(drt_tensor), POINTER(ctypes.c_int64), c_size_t,
    POINTER(c_size_t))

# drt_status drt_tensor_byte_size(const drt_tensor *tensor, size_t *out_size);
drt_tensor_byte_size = _bind(
    "drt_tensor_byte_size", drt_status, POINTER(drt_tensor), POINTER(c_size_t))

# ---- Added after the first release (issue 11) ----

# ---- Model metadata ----

# drt_status drt_model_producer_name(const drt_model *model, const char **out_value);
drt_model_producer_name = _bind(
    "drt_model_producer_name", drt_status, POINTER(drt_model), POINTER(c_char_p))

# drt_status drt_model_producer_version(const drt_model *model, const char **out_value);
drt_model_producer_version = _bind(
    "drt_model_producer_version", drt_status, POINTER(drt_model), POINTER(c_char_p))

# drt_status drt_model_domain(const drt_model *model, const char **out_value);
drt_model_domain = _bind("drt_model_domain", drt_status, POINTER(drt_model), POINTER(c_char_p))

# drt_status drt_model_description(const drt_model *model, const char **out_value);
drt_model_description = _bind(
    "drt_model_description", drt_status, POINTER(drt_model), POINTER(c_char_p))

# drt_status drt_model_graph_name(const drt_model *model, const char **out_value);
drt_model_graph_name = _bind(
    "drt_model_graph_name", drt_status, POINTER(drt_model), POINTER(c_char_p))

# drt_status drt_model_graph_description(const drt_model *model, const char **out_value);
drt_model_graph_description = _bind(
    "drt_model_graph_description", drt_status, POINTER(drt_model), POINTER(c_char_p))

# drt_status drt_model_version(const drt_model *model, int64_t *out_version);
drt_model_version = _bind(
    "drt_model_version", drt_status, POINTER(drt_model), POINTER(ctypes.c_int64))

# drt_status drt_model_metadata_count(const drt_model *model, size_t *out_count);
drt_model_metadata_count = _bind(
    "drt_model_metadata_count", drt_status, POINTER(drt_model), POINTER(c_size_t))

# drt_status drt_model_metadata_key(const drt_model *model, size_t index, const char **out_key);
drt_model_metadata_key = _bind(
    "drt_model_metadata_key", drt_status, POINTER(drt_model), c_size_t, POINTER(c_char_p))

# drt_status drt_model_metadata_lookup(const drt_model *model, const char *key, const char **out_value);
drt_model_metadata_lookup = _bind(
    "drt_model_metadata_lookup", drt_status, POINTER(drt_model), c_char_p, POINTER(c_char_p))

# drt_status drt_model_input_dim_name(const drt_model *model, size_t index, size_t axis, const char **out_name);
drt_model_input_dim_name = _bind(
    "drt_model_input_dim_name", drt_status, POINTER(drt_model), c_size_t, c_size_t, POINTER(c_char_p))

# drt_status drt_model_output_dim_name(const drt_model *model, size_t index, size_t axis, const char **out_name);
drt_model_output_dim_name = _bind(
    "drt_model_output_dim_name", drt_status, POINTER(drt_model), c_size_t, c_size_t, POINTER(c_char_p))

# ---- Extra outputs ----

# drt_status drt_session_options_add_output(drt_session_options *options, const char *name);
drt_session_options_add_output = _bind(
    "drt_session_options_add_output", drt_status, POINTER(drt_session_options), c_char_p)

# ---- Run options and cancellation ----

# typedef struct drt_run_options drt_run_options;
class drt_run_options(ctypes.Structure):
    pass


# drt_status drt_run_options_create(drt_run_options **out_options);
drt_run_options_create = _bind(
    "drt_run_options_create", drt_status, POINTER(POINTER(drt_run_options)))

# void drt_run_options_free(drt_run_options *options);
drt_run_options_free = _bind("drt_run_options_free", None, POINTER(drt_run_options))

# drt_status drt_run_options_set_terminate(drt_run_options *options, int32_t terminate);
drt_run_options_set_terminate = _bind(
    "drt_run_options_set_terminate", drt_status, POINTER(drt_run_options), c_int32)

# drt_status drt_session_run_with_options(drt_session *session, const drt_run_options *run_options,
#                                         const char *const *input_names, const drt_tensor *const *inputs,
#                                         size_t input_count, const char *const *output_names,
#                                         size_t output_count, drt_tensor **outputs);
drt_session_run_with_options = _bind(
    "drt_session_run_with_options", drt_status, POINTER(drt_session), POINTER(drt_run_options),
    POINTER(c_char_p), POINTER(POINTER(drt_tensor)), c_size_t, POINTER(c_char_p), c_size_t,
    POINTER(POINTER(drt_tensor)))

# ---- Custom operators ----

# typedef struct drt_custom_op drt_custom_op;
class drt_custom_op(ctypes.Structure):
    pass


# typedef drt_status (*drt_custom_op_shape_fn)(void *user_data, size_t input_count, const int32_t *input_types,
#                                              const int64_t *const *input_shapes, const size_t *input_ranks,
#                                              size_t output_count, size_t max_rank, int32_t *output_types,
#                                              int64_t *const *output_shapes, size_t *output_ranks);
drt_custom_op_shape_fn = ctypes.CFUNCTYPE(
    drt_status, c_void_p, c_size_t, POINTER(c_int32), POINTER(POINTER(ctypes.c_int64)), POINTER(c_size_t),
    c_size_t, c_size_t, POINTER(c_int32), POINTER(POINTER(ctypes.c_int64)), POINTER(c_size_t))

# typedef drt_status (*drt_custom_op_compute_fn)(void *user_data, const drt_tensor *const *inputs, size_t input_count,
#                                                drt_tensor *const *outputs, size_t output_count);
drt_custom_op_compute_fn = ctypes.CFUNCTYPE(
    drt_status, c_void_p, POINTER(POINTER(drt_tensor)), c_size_t, POINTER(POINTER(drt_tensor)), c_size_t)

# drt_status drt_custom_op_create(const char *domain, const char *op_type, int32_t since_version, int32_t until_version,
#                                 drt_custom_op_shape_fn shape, drt_custom_op_compute_fn compute, void *user_data,
#                                 drt_custom_op **out_op);
drt_custom_op_create = _bind(
    "drt_custom_op_create", drt_status, c_char_p, c_char_p, c_int32, c_int32, drt_custom_op_shape_fn,
    drt_custom_op_compute_fn, c_void_p, POINTER(POINTER(drt_custom_op)))

# void drt_custom_op_free(drt_custom_op *op);
drt_custom_op_free = _bind("drt_custom_op_free", None, POINTER(drt_custom_op))

# drt_status drt_session_options_add_custom_op(drt_session_options *options, const drt_custom_op *op);
drt_session_options_add_custom_op = _bind(
    "drt_session_options_add_custom_op", drt_status, POINTER(drt_session_options), POINTER(drt_custom_op))

# drt_status drt_tensor_mutable_data(drt_tensor *tensor, void **out_data);
drt_tensor_mutable_data = _bind(
    "drt_tensor_mutable_data", drt_status, POINTER(drt_tensor), POINTER(c_void_p))

# ---- CPU tier ----

# drt_status drt_cpu_tier(const char **out_name);
drt_cpu_tier = _bind("drt_cpu_tier", drt_status, POINTER(c_char_p))
