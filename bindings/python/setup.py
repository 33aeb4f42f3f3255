"""setuptools hooks that pyproject.toml cannot express.

Version: read from the C header's DRT_VERSION_MAJOR/MINOR/PATCH, the one place the version is
kept (drt_version() and the Swift library report the same macros). The header is looked for next
to this file (where `make wheel` stages it) and then at ../../include/deformrt.h (a checkout).

Wheel tags: with the library bundled (the Makefile copies it into src/deformrt/), the wheel holds
x86-64 machine code, so it is tagged for the platform (py3-none-linux_x86_64; `make wheel` then runs
auditwheel, which vendors OpenBLAS and retags it manylinux). The library is loaded with ctypes and
has no Python ABI, so one wheel serves every Python 3. Without the library it stays py3-none-any.
"""

import pathlib
import re

from setuptools import Distribution, setup

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70.1 takes the command from the wheel package
    from wheel.bdist_wheel import bdist_wheel

HERE = pathlib.Path(__file__).resolve().parent
BUNDLED = (HERE / "src" / "deformrt" / "libdeformrt.so").is_file()


def version() -> str:
    for header in (HERE / "deformrt.h", HERE.parents[1] / "include" / "deformrt.h"):
        if header.is_file():
            text = header.read_text()
            parts = [re.search(rf"^#define DRT_VERSION_{part} (\d+)$", text, re.M) for part in ("MAJOR", "MINOR", "PATCH")]
            if all(parts):
                return ".".join(match.group(1) for match in parts)
            raise RuntimeError(f"{header} has no DRT_VERSION_MAJOR/MINOR/PATCH")
    raise RuntimeError("cannot find deformrt.h (next to setup.py or at ../../include) to read the version from")


class BundledLibraryDistribution(Distribution):
    """Machine code inside: installed as platlib, and the wheel is not pure."""

    def has_ext_modules(self):
        return BUNDLED


class PlatformWheel(bdist_wheel):
    def get_tag(self):
        python, abi, platform = super().get_tag()
        return ("py3", "none", platform) if BUNDLED else (python, abi, platform)


setup(version=version(), distclass=BundledLibraryDistribution, cmdclass={"bdist_wheel": PlatformWheel})
