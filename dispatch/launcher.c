// build/bin/deformrt: starts the copy of the CLI built for this CPU's tier (build/bin/deformrt-<tier>,
// next to this file), by the same rule as the library's dispatcher (cputier.h): the widest tier the
// CPU supports, or DEFORMRT_CPU's choice; a tier the CPU lacks is an error message, not SIGILL.
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cputier.h"

int main(int argc, char **argv) {
    (void)argc;
    int status;
    char message[256];
    int tier = deformrt_choose_tier(getenv("DEFORMRT_CPU"), &status, message, sizeof message);
    if (status != 0) {
        fprintf(stderr, "error: %s\n", message);
        return 2;
    }
    char path[4096];
    ssize_t length = readlink("/proc/self/exe", path, sizeof path - 32);
    if (length <= 0) {
        perror("error: cannot find the deformrt executable (/proc/self/exe)");
        return 2;
    }
    path[length] = 0;
    char *slash = strrchr(path, '/');
    snprintf(slash + 1, sizeof path - (size_t)(slash + 1 - path), "deformrt-%s", deformrt_tier_name(tier));
    execv(path, argv);
    fprintf(stderr, "error: cannot start %s: ", path);
    perror(NULL);
    return 2;
}
