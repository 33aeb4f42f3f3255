/* The C target exists so Swift code can import include/deformrt.h and check itself against it. */
#include "deformrt.h"
