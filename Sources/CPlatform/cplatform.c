// SwiftPM needs one source file per C target; everything is in include/cplatform.h.
#include "cplatform.h"
