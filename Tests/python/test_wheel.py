"""The wheel `make wheel` writes (dist/deformrt-VERSION-py3-none-manylinux_*_x86_64.whl): platform
tagged, the library and the OpenBLAS it needs inside, installed into a fresh venv and used from
there with the repository's library out of reach.

`make test` builds the wheel first and sets DEFORMRT_WHEEL_REQUIRED=1, so a missing wheel fails
there; a plain pytest run without one skips these tests.
"""
import ctypes
import glob
import os
import re
import subprocess
import sys
import textwrap
import zipfile

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HEADER = os.path.join(ROOT, "include", "deformrt.h")
EXAMPLE = os.path.join(ROOT, "examples", "python", "main.py")
BINDING_TESTS = os.path.join(ROOT, "bindings", "python", "tests")
AUDITWHEEL = os.path.join(ROOT, "build", "wheel-tools", "bin", "auditwheel")


def _header_version():
    with open(HEADER) as f:
        text = f.read()
    return ".".join(re.search(rf"#define DRT_VERSION_{p} (\d+)", text).group(1) for p in ("MAJOR", "MINOR", "PATCH"))


@pytest.fixture(scope="module")
def wheel():
    found = sorted(glob.glob(os.path.join(ROOT, "dist", "deformrt-*.whl")))
    if not found:
        if os.environ.get("DEFORMRT_WHEEL_REQUIRED") == "1":
            pytest.fail("no dist/deformrt-*.whl: `make wheel` did not write one")
        pytest.skip("no dist/deformrt-*.whl (run `make wheel`)")
    assert len(found) == 1, found
    return found[0]


def _clean_env():
    """The environment without anything that points at the repository's library or sources."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("DEFORMRT_LIBRARY", "PYTHONPATH", "LD_LIBRARY_PATH", "DEFORMRT_CPU")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory):
    """A fresh venv with the wheel installed. --system-site-packages only lends it numpy, onnx and
    pytest; the tests check that deformrt and its libraries come from the venv."""
    home = tmp_path_factory.mktemp("wheel-venv")
    path = home / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(path)], check=True)
    python = str(path / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps", "--no-index",
                    "--force-reinstall", wheel], check=True, env=_clean_env(), cwd=str(home))
    return home, python


def test_wheel_name_is_versioned_and_platform_tagged(wheel):
    name = os.path.basename(wheel)
    match = re.fullmatch(r"deformrt-([0-9.]+)-py3-none-(manylinux_\d+_\d+_x86_64(?:\.manylinux\w+)*)\.whl", name)
    assert match, f"{name} is not deformrt-VERSION-py3-none-manylinux_X_Y_x86_64.whl"
    assert match.group(1) == _header_version()
    lib = ctypes.CDLL(os.path.join(ROOT, ".build", "release", "libdeformrt.so"))
    lib.drt_version.restype = ctypes.c_char_p
    assert lib.drt_version().decode() == match.group(1)


def test_wheel_holds_the_library_and_vendored_openblas(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/WHEEL"))).decode()
    assert "deformrt/libdeformrt.so" in names
    assert any(re.match(r"deformrt\.libs/libopenblas.*\.so", n) for n in names), names
    assert "Root-Is-Purelib: false" in metadata and "Tag: py3-none-manylinux" in metadata


@pytest.mark.skipif(not os.path.exists(AUDITWHEEL), reason="build/wheel-tools (made by `make wheel`) missing")
def test_auditwheel_show_accepts_it(wheel):
    result = subprocess.run([AUDITWHEEL, "show", wheel], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert re.search(r'is consistent with the following platform tag: "manylinux_\d+_\d+_x86_64"', text), text


def test_installed_package_loads_only_its_own_libraries(venv):
    home, python = venv
    probe = textwrap.dedent("""
        import deformrt, numpy as np, sys
        from deformrt import _capi
        session = deformrt.InferenceSession(sys.argv[1])
        session.run(None, {session.get_inputs()[0].name: np.load(sys.argv[2])})
        maps = open("/proc/self/maps").read().split("\\n")
        libs = sorted({line.split()[-1] for line in maps if "deformrt" in line or "openblas" in line or "gfortran" in line})
        print(deformrt.__file__)
        print(_capi.library._name)
        print(deformrt.__version__, deformrt.get_cpu_tier())
        print("\\n".join(libs))
    """)
    result = subprocess.run([python, "-c", probe, os.path.join(ROOT, "examples", "models", "tiny_dcn.onnx"),
                             os.path.join(ROOT, "examples", "models", "tiny_dcn_input.npy")],
                            capture_output=True, text=True, env=_clean_env(), cwd=str(home), timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    venv_root = str(home / "venv")
    assert lines[0].startswith(venv_root), lines[0]
    assert lines[1].startswith(venv_root) and lines[1].endswith("libdeformrt.so"), lines[1]
    assert lines[2].split()[0] == _header_version()
    mapped = lines[3:]  # every mapped file named like deformrt, openblas or gfortran (numpy has its own)
    ours = [path for path in mapped if "deformrt" in path]
    assert ours and all(path.startswith(venv_root) for path in ours), ours
    assert any("/deformrt.libs/libopenblas" in path for path in ours), ours
    assert not any(path.startswith(ROOT) or "/openblas-serial/" in path for path in mapped), mapped


def test_installed_package_runs_the_example(venv):
    home, python = venv
    result = subprocess.run([python, EXAMPLE], capture_output=True, text=True, env=_clean_env(), cwd=str(home),
                            timeout=120)
    assert result.returncode == 0, result.stderr
    native = subprocess.run([sys.executable, EXAMPLE], capture_output=True, text=True, timeout=120,
                            env=dict(_clean_env(), DEFORMRT_LIBRARY=os.path.join(ROOT, ".build", "release", "libdeformrt.so"),
                                     PYTHONPATH=os.path.join(ROOT, "bindings", "python", "src")))
    assert native.returncode == 0, native.stderr
    assert result.stdout == native.stdout and result.stdout.count("class ") == 3


def test_installed_package_passes_the_binding_tests(venv):
    home, python = venv
    # An empty config file: the repository's bindings/python/pyproject.toml would put src/ on the path.
    config = home / "pytest.ini"
    config.write_text("[pytest]\n")
    check = "import deformrt, sys; sys.exit(0 if deformrt.__file__.startswith(sys.argv[1]) else 1)"
    assert subprocess.run([python, "-c", check, str(home / "venv")], env=_clean_env(), cwd=str(home)).returncode == 0
    result = subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", str(config),
                             "--rootdir", str(home), BINDING_TESTS],
                            capture_output=True, text=True, env=_clean_env(), cwd=str(home), timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
