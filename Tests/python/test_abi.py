"""The shipped library's contract: exported symbols, self-containment, and the header."""
import os
import shutil
import subprocess

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LIB = os.environ.get("DEFORMRT_LIBRARY", os.path.join(ROOT, ".build", "release", "libdeformrt.so"))
HEADER = os.path.join(ROOT, "include", "deformrt.h")


def _exported():
    out = subprocess.run(["nm", "-D", "--defined-only", LIB], check=True, capture_output=True, text=True).stdout
    return sorted(line.split()[-1] for line in out.splitlines() if line.strip())


def test_exports_exactly_the_symbol_list():
    with open(os.path.join(ROOT, "abi", "symbols.txt")) as f:
        listed = [line.strip() for line in f if line.strip()]
    assert len(listed) == len(set(listed)), "abi/symbols.txt lists a symbol twice"
    assert _exported() == sorted(listed), "nm -D --defined-only differs from abi/symbols.txt (append new symbols to it)"


def test_every_header_function_is_exported():
    import re
    with open(HEADER) as f:
        declared = set(re.findall(r"^(?:const char \*|void |drt_status )(drt_[a-z_]+)\(", f.read(), re.M))
    assert declared == set(_exported())


def test_no_swift_runtime_dependency():
    out = subprocess.run(["ldd", LIB], check=True, capture_output=True, text=True).stdout
    assert "libswift" not in out and "libFoundation" not in out, out


def test_header_module_copy_matches():
    with open(HEADER, "rb") as a, open(os.path.join(ROOT, "Sources", "CDeformRT", "include", "deformrt.h"), "rb") as b:
        assert a.read() == b.read(), "Sources/CDeformRT/include/deformrt.h must be a copy of include/deformrt.h"


@pytest.mark.parametrize("compiler,flags", [("cc", ["-std=c99", "-x", "c"]), ("c++", ["-std=c++11", "-x", "c++"])])
def test_header_compiles_cleanly(tmp_path, compiler, flags):
    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} not installed")
    source = tmp_path / "use.c"
    source.write_text('#include "deformrt.h"\nint main(void) { return drt_version() == 0; }\n')
    subprocess.run([compiler, *flags, "-Wall", "-Wextra", "-Werror", "-pedantic", "-I", os.path.join(ROOT, "include"),
                    str(source), "-c", "-o", str(tmp_path / "use.o")], check=True)


def test_version_matches_header():
    import ctypes
    import re
    lib = ctypes.CDLL(LIB)
    lib.drt_version.restype = ctypes.c_char_p
    with open(HEADER) as f:
        text = f.read()
    parts = [re.search(rf"#define DRT_VERSION_{p} (\d+)", text).group(1) for p in ("MAJOR", "MINOR", "PATCH")]
    assert lib.drt_version().decode() == ".".join(parts)
