"""`make install PREFIX=...` and the three usual ways a project finds DeformRT: pkg-config and a
CMake package (find_package(DeformRT), DeformRT::deformrt) build examples/c and a C++ program
against a temporary prefix, moved after installing (the .pc and CMake files are relocatable); a
SwiftPM package outside the repository depends on DeformRT by path (the one slow test: it builds
the package from scratch)."""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest

import deformrt

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LIB = os.environ.get("DEFORMRT_LIBRARY", os.path.join(ROOT, ".build", "release", "libdeformrt.so"))
MODEL = os.path.join(ROOT, "examples", "models", "tiny_dcn.onnx")
IMAGE = os.path.join(ROOT, "examples", "models", "tiny_dcn_input.npy")
EXAMPLE = os.path.join(ROOT, "examples", "c", "main.c")
CONSUMER = os.path.join(ROOT, "Tests", "install")


def _run(command, timeout=600, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert result.returncode == 0, f"{command} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _expected_top3() -> str:
    with deformrt.InferenceSession(MODEL) as session:
        (probabilities,) = session.run(None, {"image": np.load(IMAGE)})
    values = probabilities.ravel()
    top = sorted(range(values.size), key=lambda i: (-values[i], i))[:3]
    return "".join(f"class {i}: {float(values[i]):.6f}\n" for i in top)


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    """A `make install` tree, then moved elsewhere (nothing may refer to the first place)."""
    if os.path.realpath(LIB) != os.path.realpath(os.path.join(ROOT, ".build", "release", "libdeformrt.so")):
        pytest.skip("make install ships the checkout's .build/release library, not DEFORMRT_LIBRARY")
    base = tmp_path_factory.mktemp("install")
    staged = base / "staged"
    # The library is built already: -o build keeps make from rebuilding it (and from touching deps).
    _run(["make", "-C", ROOT, "-o", "build", "-o", "deps", "install", f"PREFIX={staged}"])
    # (No space in it: pkg-config escapes one, but $(pkg-config ...) in a shell does not undo that.)
    moved = base / "moved_prefix"
    shutil.move(str(staged), str(moved))
    return moved


def test_install_lays_out_the_usual_files(prefix):
    for path in ["include/deformrt.h", "lib/libdeformrt.so", "bin/deformrt", "bin/deformrt-baseline",
                 "bin/deformrt-avx2", "bin/deformrt-avx512", "lib/pkgconfig/deformrt.pc",
                 "lib/cmake/DeformRT/DeformRTConfig.cmake", "lib/cmake/DeformRT/DeformRTConfigVersion.cmake"]:
        assert (prefix / path).is_file(), path
    with open(os.path.join(ROOT, "include", "deformrt.h"), "rb") as a:
        assert (prefix / "include" / "deformrt.h").read_bytes() == a.read()
    out = _run([str(prefix / "bin" / "deformrt"), "info", MODEL])  # the launcher starts bin/deformrt-<tier>
    assert "image" in out and "cpu tier: " in out


def test_pkg_config_builds_and_runs_the_c_example(prefix, tmp_path):
    if shutil.which("pkg-config") is None:
        pytest.skip("pkg-config not installed (make deps installs it)")
    env = dict(os.environ, PKG_CONFIG_PATH=str(prefix / "lib" / "pkgconfig"))
    assert _run(["pkg-config", "--modversion", "deformrt"], env=env).strip() == deformrt.__version__
    flags = shlex.split(_run(["pkg-config", "--cflags", "--libs", "deformrt"], env=env))
    assert f"-I{prefix}/lib/pkgconfig/../../include" in flags and "-ldeformrt" in flags
    assert os.path.samefile(flags[0][2:], prefix / "include")
    program = tmp_path / "c-example"
    _run(["sh", "-c", f'cc -std=c99 -O2 -Wall -Wextra -Werror "{EXAMPLE}" $(pkg-config --cflags --libs deformrt) '
                      f'-Wl,-rpath,"{prefix / "lib"}" -o "{program}"'], env=env)
    assert _run([str(program), MODEL, IMAGE]) == _expected_top3()


def test_cmake_package_builds_c_and_cpp_consumers(prefix, tmp_path):
    if shutil.which("cmake") is None:
        pytest.skip("cmake not installed (make deps installs it)")
    build = tmp_path / "build"
    _run(["cmake", "-S", CONSUMER, "-B", str(build), f"-DCMAKE_PREFIX_PATH={prefix}",
          f"-DEXAMPLE_SOURCE={EXAMPLE}", "-DCMAKE_BUILD_TYPE=Release"])
    _run(["cmake", "--build", str(build), "-j", "2"])
    assert _run([str(build / "c_example"), MODEL, IMAGE]) == _expected_top3()
    out = _run([str(build / "cpp_consumer"), MODEL])
    assert out == f"version {deformrt.__version__}\nproducer deformrt tools/make_example_model.py\ninput image\n"


def test_cmake_version_check(prefix, tmp_path):
    if shutil.which("cmake") is None:
        pytest.skip("cmake not installed (make deps installs it)")
    major, minor, patch = map(int, deformrt.__version__.split("."))
    for requested, accepted in [(f"{major}.{minor}", True), (f"{major}.{minor + 1}", False),
                                (f"{major + 1}.0", False), (f"{major}.{minor}.{patch + 1}", False)]:
        project = tmp_path / requested
        project.mkdir()
        (project / "CMakeLists.txt").write_text(
            f"cmake_minimum_required(VERSION 3.16)\nproject(v C)\nfind_package(DeformRT {requested} REQUIRED)\n")
        result = subprocess.run(["cmake", "-S", str(project), "-B", str(project / "build"),
                                 f"-DCMAKE_PREFIX_PATH={prefix}"], capture_output=True, text=True, timeout=120)
        assert (result.returncode == 0) == accepted, (requested, result.stdout, result.stderr)


@pytest.mark.slow
def test_swiftpm_package_outside_the_repository_depends_on_it_by_path(tmp_path):
    swift = shutil.which("swift") or ("/opt/swift/usr/bin/swift" if os.path.exists("/opt/swift/usr/bin/swift") else None)
    if swift is None:
        pytest.skip("swift not installed")
    package = tmp_path / "consumer"
    shutil.copytree(os.path.join(CONSUMER, "swift-consumer"), package)
    template = package / "Package.swift.in"
    (package / "Package.swift").write_text(template.read_text().replace("@DEFORMRT_PATH@", ROOT)
                                           .replace("@DEFORMRT_PACKAGE@", os.path.basename(ROOT)))
    template.unlink()
    # A debug build without flags: what a dependent gets (no -target-cpu, no unsafe flags).
    _run([swift, "build", "--package-path", str(package), "--product", "Consumer"], timeout=1800)
    binary = _run([swift, "build", "--package-path", str(package), "--show-bin-path"]).strip()
    out = _run([os.path.join(binary, "Consumer"), MODEL])
    assert out == "output probabilities [1, 10]\nproducer deformrt tools/make_example_model.py\n"
