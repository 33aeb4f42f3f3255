// A C++ program using the C API through the installed header: prints the library version and the
// model's metadata and input, as "version", "producer", "input" lines. usage: cpp_consumer MODEL.onnx
#include <deformrt.h>

#include <cstdio>
#include <memory>

namespace {
struct ModelDeleter {
    void operator()(drt_model *model) const { drt_model_free(model); }
};
using ModelPtr = std::unique_ptr<drt_model, ModelDeleter>;
}  // namespace

int main(int argc, char **argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s MODEL.onnx\n", argv[0]);
        return 2;
    }
    drt_model *raw = nullptr;
    if (drt_model_load_file(argv[1], &raw) != DRT_OK) {
        std::fprintf(stderr, "load failed: %s\n", drt_last_error_message());
        return 1;
    }
    ModelPtr model(raw);
    const char *producer = nullptr;
    const char *input = nullptr;
    if (drt_model_producer_name(model.get(), &producer) != DRT_OK || drt_model_input_name(model.get(), 0, &input) != DRT_OK) {
        std::fprintf(stderr, "metadata failed: %s\n", drt_last_error_message());
        return 1;
    }
    std::printf("version %s\nproducer %s\ninput %s\n", drt_version(), producer, input);
    return 0;
}
