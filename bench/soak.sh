#!/usr/bin/env bash
# Soak test: CYCLES (default 10000) load / session / run / free cycles of one model through the
# C API, printing the process's resident memory (VmRSS) after the first cycle, every 1000
# cycles and at the end. Memory must stay flat: the script fails if the end is more than
# SOAK_MAX_GROWTH_KB (default 512) above the RSS after the warm-up (the first 10% of the cycles,
# in which the allocator and the thread pool reach their working size).
#
#   bench/soak.sh [MODEL.onnx] [CYCLES]      (default: examples/models/tiny_dcn.onnx, 10000)
#
# Needs the release library (make build). The driver is C, so nothing but DeformRT allocates.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
model=${1:-$root/examples/models/tiny_dcn.onnx}
cycles=${2:-10000}
lib_dir=${DEFORMRT_LIBRARY:+$(dirname "$DEFORMRT_LIBRARY")}
lib_dir=${lib_dir:-$root/.build/release}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cat >"$work/soak.c" <<'C'
#include <deformrt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long rss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmRSS:", 6) == 0) kb = strtol(line + 6, NULL, 10);
    }
    if (f) fclose(f);
    return kb;
}

static int check(drt_status status, const char *call) {
    if (status == DRT_OK) return 0;
    fprintf(stderr, "%s failed: %s\n", call, drt_last_error_message());
    exit(1);
}

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    const char *path = argv[1];
    long cycles = atol(argv[2]);
    long start = 0, warm = 0;
    long warm_cycle = cycles / 10 > 0 ? cycles / 10 : 1;
    for (long cycle = 1; cycle <= cycles; cycle++) {
        drt_model *model = NULL;
        check(drt_model_load_file(path, &model), "drt_model_load_file");
        drt_session_options *options = NULL;
        check(drt_session_options_create(&options), "drt_session_options_create");
        check(drt_session_options_set_threads(options, 2), "drt_session_options_set_threads");
        drt_session *session = NULL;
        check(drt_session_create(model, options, &session), "drt_session_create");
        drt_session_options_free(options);
        /* Every input zero-filled at its declared shape (dynamic dims: 1). */
        size_t inputs = 0, outputs = 0;
        check(drt_model_input_count(model, &inputs), "drt_model_input_count");
        check(drt_model_output_count(model, &outputs), "drt_model_output_count");
        const char *names[16];
        drt_tensor *tensors[16];
        for (size_t i = 0; i < inputs && i < 16; i++) {
            int64_t dims[16];
            size_t rank = 0, count = 1;
            check(drt_model_input_name(model, i, &names[i]), "drt_model_input_name");
            check(drt_model_input_shape(model, i, dims, 16, &rank), "drt_model_input_shape");
            for (size_t d = 0; d < rank; d++) {
                if (dims[d] < 0) dims[d] = 1;
                count *= (size_t)dims[d];
            }
            float *data = calloc(count ? count : 1, sizeof(float));
            check(drt_tensor_create(DRT_TYPE_FLOAT, dims, rank, data, count * sizeof(float), &tensors[i]), "drt_tensor_create");
            free(data);
        }
        drt_tensor *results[16] = {0};
        check(drt_session_run(session, names, (const drt_tensor *const *)tensors, inputs, NULL, outputs, results),
              "drt_session_run");
        for (size_t i = 0; i < outputs; i++) drt_tensor_free(results[i]);
        for (size_t i = 0; i < inputs; i++) drt_tensor_free(tensors[i]);
        /* Alternate the free order: a session keeps its model alive either way. */
        if (cycle % 2) { drt_session_free(session); drt_model_free(model); }
        else { drt_model_free(model); drt_session_free(session); }
        if (cycle == 1) {
            start = rss_kb();
            printf("cycle %6ld: RSS %ld KiB (start)\n", cycle, start);
        }
        if (cycle == warm_cycle) warm = rss_kb();
        if (cycle % 1000 == 0 || cycle == cycles) {
            printf("cycle %6ld: RSS %ld KiB\n", cycle, rss_kb());
        }
        fflush(stdout);
    }
    long end = rss_kb();
    printf("RSS start %ld KiB, after warm-up (cycle %ld) %ld KiB, end %ld KiB: growth %ld KiB over the last %ld cycles\n",
           start, warm_cycle, warm, end, end - warm, cycles - warm_cycle);
    return 0;
}
C

cc -std=c99 -O2 -Wall -Wextra -I"$root/include" "$work/soak.c" -L"$lib_dir" -ldeformrt -Wl,-rpath,"$lib_dir" -o "$work/soak"
started=$(date +%s)
"$work/soak" "$model" "$cycles" | tee "$work/out.txt"
echo "elapsed $(( $(date +%s) - started )) s"
growth=$(sed -n 's/.*growth \(-\{0,1\}[0-9]*\) KiB.*/\1/p' "$work/out.txt")
limit=${SOAK_MAX_GROWTH_KB:-512}
if [ "$growth" -gt "$limit" ]; then
    echo "FAIL: RSS grew by $growth KiB (limit $limit KiB)"
    exit 1
fi
echo "OK: RSS flat (growth $growth KiB <= $limit KiB)"
