"""Finds and loads libdeformrt.so.

Search order (the first hit wins):
  1. the path in the DEFORMRT_LIBRARY environment variable (an error if it does not load:
     an explicit choice is never silently replaced by another library);
  2. libdeformrt.so next to this file (a pip install of a tree the Makefile prepared);
  3. .build/release/libdeformrt.so in this folder or any folder above it (a source checkout);
  4. ctypes.util.find_library("deformrt") (the system library path).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path
from typing import Mapping, Optional

LIBRARY_ENV = "DEFORMRT_LIBRARY"
LIBRARY_FILE = "libdeformrt.so"

_PACKAGE_DIR = Path(__file__).resolve().parent


class LibraryNotFoundError(OSError):
    """libdeformrt.so could not be found or loaded."""


def locate(environ: Optional[Mapping[str, str]] = None) -> str:
    """The path (or, for a system library, the soname) of the library to load."""
    environ = os.environ if environ is None else environ
    override = environ.get(LIBRARY_ENV)
    if override:
        if not Path(override).is_file():
            raise LibraryNotFoundError(
                f"{LIBRARY_ENV} is set to {override!r}, which is not a file")
        return override

    bundled = _PACKAGE_DIR / LIBRARY_FILE
    if bundled.is_file():
        return str(bundled)

    for folder in (_PACKAGE_DIR, *_PACKAGE_DIR.parents):
        built = folder / ".build" / "release" / LIBRARY_FILE
        if built.is_file():
            return str(built)

    system = ctypes.util.find_library("deformrt")
    if system:
        return system

    raise LibraryNotFoundError(
        f"cannot find {LIBRARY_FILE}: set {LIBRARY_ENV} to its path, install the package from a "
        f"tree where `make` copied it into {_PACKAGE_DIR}, or build it with `make` in the "
        f"DeformRT repository (.build/release/{LIBRARY_FILE})")


def load(environ: Optional[Mapping[str, str]] = None) -> ctypes.CDLL:
    path = locate(environ)
    try:
        return ctypes.CDLL(path)
    except OSError as error:
        raise LibraryNotFoundError(f"cannot load the DeformRT library {path!r}: {error}") from error
