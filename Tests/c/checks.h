/*
 * What the C API test programs (capi_contract.c, capi_additions.c) share: counted checks that
 * print one line per failure with the library's last error, a refusal check, and loading a model
 * or giving up. Included by one .c file per program (the statics are that program's own).
 */
#ifndef DEFORMRT_TESTS_CHECKS_H
#define DEFORMRT_TESTS_CHECKS_H

#include <deformrt.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;
static int checks = 0;

#define CHECK(condition)                                                                      \
    do {                                                                                      \
        checks++;                                                                             \
        if (!(condition)) {                                                                   \
            failures++;                                                                       \
            printf("FAIL %s:%d: %s (last error: %s)\n", __FILE__, __LINE__, #condition,       \
                   drt_last_error_message());                                                 \
        }                                                                                     \
    } while (0)

/* A call that must be refused as an invalid argument, with a message naming `text`. */
#define REFUSED(call, text)                                                                   \
    do {                                                                                      \
        drt_status status_ = (call);                                                          \
        CHECK(status_ == DRT_ERROR_INVALID_ARGUMENT);                                         \
        CHECK(strstr(drt_last_error_message(), text) != NULL);                                \
    } while (0)

/* The model at `path`, or a FAIL line and exit 1. */
static drt_model *load(const char *path) {
    drt_model *model = NULL;
    if (drt_model_load_file(path, &model) != DRT_OK) {
        printf("FAIL cannot load %s: %s\n", path, drt_last_error_message());
        exit(1);
    }
    return model;
}

/* The summary line and the exit status. */
static int report(void) {
    printf("%d checks, %d failed\n", checks, failures);
    return failures == 0 ? 0 : 1;
}

#endif
