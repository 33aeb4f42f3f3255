"""Runtime CPU dispatch of the shipped library (README, "How the library is built"): one
libdeformrt.so holding the engine for the baseline (x86-64-v2), avx2 (x86-64-v3) and avx512
(x86-64-v4) tiers, the widest the CPU supports chosen once at load, DEFORMRT_CPU forcing one, and a
tier the CPU lacks refused with a message instead of SIGILL.

The proofs that the baseline copy runs on an x86-64-v2 CPU: objdump finds no AVX-or-later
instruction in any code a baseline CPU can reach, and, where Debian's qemu-user is installed, the
C example and a probe run under `qemu-x86_64 -cpu Nehalem` (which raises SIGILL on any AVX
instruction) with the same output as on this machine.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LIB = os.environ.get("DEFORMRT_LIBRARY", os.path.join(ROOT, ".build", "release", "libdeformrt.so"))
MODEL = os.path.join(ROOT, "examples", "models", "tiny_dcn.onnx")
IMAGE = os.path.join(ROOT, "examples", "models", "tiny_dcn_input.npy")
C_EXAMPLE = os.path.join(ROOT, "build", "bin", "c-example")
CLI = os.path.join(ROOT, "build", "bin", "deformrt")
TIERS = ["baseline", "avx2", "avx512"]
STATUS_INVALID_ARGUMENT = 1
STATUS_UNSUPPORTED = 4

# Loads the library in a fresh process (the tier is chosen at load) and reports what each entry
# point did, as JSON.
PROBE = textwrap.dedent("""
    import ctypes, json, sys
    import numpy as np
    lib = ctypes.CDLL(sys.argv[1])
    lib.drt_version.restype = ctypes.c_char_p
    lib.drt_last_error_message.restype = ctypes.c_char_p
    report = {"version": lib.drt_version().decode()}
    name = ctypes.c_char_p()
    report["tier_status"] = lib.drt_cpu_tier(ctypes.byref(name))
    report["tier"] = name.value.decode() if name.value else None
    report["tier_message"] = lib.drt_last_error_message().decode()
    model = ctypes.c_void_p()
    report["load_status"] = lib.drt_model_load_file(sys.argv[2].encode(), ctypes.byref(model))
    report["load_message"] = lib.drt_last_error_message().decode()
    shape = (ctypes.c_int64 * 2)(2, 3)
    data = (ctypes.c_float * 6)(*range(6))
    tensor = ctypes.c_void_p()
    report["tensor_status"] = lib.drt_tensor_create(1, shape, 2, data, 24, ctypes.byref(tensor))
    lib.drt_tensor_free(tensor)
    lib.drt_model_free(model)
    print(json.dumps(report))
""")


def _probe(cpu=None):
    env = dict(os.environ)
    env.pop("DEFORMRT_CPU", None)
    if cpu is not None:
        env["DEFORMRT_CPU"] = cpu
    result = subprocess.run([sys.executable, "-c", PROBE, LIB, MODEL], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _cpu_flags():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def _widest_from_cpuinfo():
    flags = _cpu_flags()
    v2 = {"pni", "ssse3", "sse4_1", "sse4_2", "popcnt", "cx16", "lahf_lm"}
    v3 = {"avx", "avx2", "fma", "bmi1", "bmi2", "f16c", "movbe", "abm"}
    v4 = {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}
    if not v2 <= flags:
        return None
    if not v3 <= flags:
        return "baseline"
    return "avx512" if v4 <= flags else "avx2"


def _run_example(cpu):
    env = dict(os.environ, DEFORMRT_CPU=cpu)
    result = subprocess.run([C_EXAMPLE, MODEL, IMAGE], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_default_tier_is_the_widest_the_cpu_supports():
    report = _probe()
    assert report["tier_status"] == 0 and report["load_status"] == 0
    assert report["tier"] == _widest_from_cpuinfo()


def test_available_tiers_all_run_here():
    # The test command runs the suites once per tier (Makefile: test-tiers); that only means
    # something on a machine where every tier runs.
    widest = _widest_from_cpuinfo()
    if widest != "avx512":
        pytest.skip(f"this CPU supports up to {widest}: the avx512 tier cannot be exercised here")


@pytest.mark.parametrize("tier", TIERS)
def test_forced_tier_is_reported_and_runs(tier):
    if TIERS.index(tier) > TIERS.index(_widest_from_cpuinfo()):
        pytest.skip(f"this CPU lacks {tier}")
    report = _probe(tier)
    assert report["tier_status"] == 0 and report["tier"] == tier
    assert report["load_status"] == 0 and report["tensor_status"] == 0


def test_tiers_agree_with_onnxruntime():
    # The tiers compute the same model with different instructions (and the baseline with OpenBLAS
    # instead of the SIMD16 micro-kernels): each agrees with onnxruntime to 1e-5, as test_examples
    # asks of the default tier.
    ort = pytest.importorskip("onnxruntime")
    probabilities = ort.InferenceSession(MODEL, providers=["CPUExecutionProvider"]).run(
        None, {"image": np.load(IMAGE)})[0][0]
    for tier in TIERS[:TIERS.index(_widest_from_cpuinfo()) + 1]:
        lines = _run_example(tier).strip().splitlines()
        assert len(lines) == 3, (tier, lines)
        for line, index in zip(lines, np.argsort(-probabilities, kind="stable")[:3]):
            cls, value = line.removeprefix("class ").split(": ")
            assert int(cls) == index and abs(float(value) - probabilities[index]) < 1e-5, (tier, line)


def test_bad_value_is_an_invalid_argument_and_blocks_models_only():
    report = _probe("sse9")
    assert report["tier_status"] == STATUS_INVALID_ARGUMENT and report["tier"] is None
    assert "DEFORMRT_CPU=sse9 names no CPU tier" in report["tier_message"]
    assert report["load_status"] == STATUS_INVALID_ARGUMENT
    assert "DEFORMRT_CPU=sse9" in report["load_message"] and "baseline, avx2 or avx512" in report["load_message"]
    assert report["tensor_status"] == 0 and report["version"]


def test_empty_value_means_unset():
    assert _probe("")["tier"] == _widest_from_cpuinfo()


def test_python_binding_reports_the_tier():
    code = "import deformrt; print(deformrt.get_cpu_tier())"
    env = dict(os.environ, DEFORMRT_LIBRARY=LIB, DEFORMRT_CPU="avx2",
               PYTHONPATH=os.path.join(ROOT, "bindings", "python", "src"))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "avx2", result.stderr
    env["DEFORMRT_CPU"] = "avx1024"
    code = ("import deformrt\ntry:\n    deformrt.InferenceSession(%r)\nexcept deformrt.DeformRTError as e:\n"
            "    print('refused:', e)\n" % MODEL)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "refused:" in result.stdout and "DEFORMRT_CPU=avx1024" in result.stdout, \
        result.stdout + result.stderr


@pytest.mark.skipif(not os.path.exists(CLI), reason="build/bin/deformrt not built")
def test_cli_info_reports_the_tier():
    for tier in TIERS[:TIERS.index(_widest_from_cpuinfo()) + 1]:
        result = subprocess.run([CLI, "info"], env=dict(os.environ, DEFORMRT_CPU=tier), capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert f"cpu tier: {tier} (CPU supports up to {_widest_from_cpuinfo()}; DEFORMRT_CPU={tier})" in result.stdout
    result = subprocess.run([CLI, "info", MODEL], env={k: v for k, v in os.environ.items() if k != "DEFORMRT_CPU"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and f"cpu tier: {_widest_from_cpuinfo()}" in result.stdout
    assert "DeformConv" in result.stdout
    result = subprocess.run([CLI, "info"], env=dict(os.environ, DEFORMRT_CPU="avx3"), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2 and "DEFORMRT_CPU=avx3 names no CPU tier" in result.stderr


# Instructions an x86-64-v2 CPU (Nehalem) does not have: every VEX/EVEX encoding (AVX and later
# spell their mnemonics with a leading v in objdump), ymm/zmm/mask registers, and the v3 scalar
# extensions (BMI1/2, LZCNT, MOVBE). tzcnt is left out: its encoding runs as bsf on older CPUs, and
# compilers emit it only where the two agree. (grep -E syntax, applied to objdump's lines.)
_NOT_V2 = (r"\s(v[a-z0-9]+|andn|bextr|blsi|blsmsk|blsr|bzhi|lzcnt|mulx|pdep|pext|rorx|sarx|shlx|shrx|movbe)\s"
           r"|%[yz]mm[0-9]|%k[0-7]([^0-9]|$)")


def _disassembly_by_function(path):
    """{function symbol: [instructions that need more than x86-64-v2]} for every function in the
    .text of `path` (grep does the filtering: the disassembly has millions of lines)."""
    objdump = subprocess.Popen(["objdump", "-d", "--no-show-raw-insn", "-j", ".text", path], stdout=subprocess.PIPE)
    grep = subprocess.run(["grep", "-E", r"^[0-9a-f]+ <.*>:$|" + _NOT_V2], stdin=objdump.stdout,
                          capture_output=True, text=True, env=dict(os.environ, LC_ALL="C"))  # 20x faster
    objdump.stdout.close()
    assert objdump.wait() == 0 and grep.returncode in (0, 1), grep.stderr
    functions, current = {}, None
    for line in grep.stdout.splitlines():
        if line.endswith(">:") and not line.startswith(" "):
            current = functions.setdefault(line[line.index("<") + 1:-2], [])
        elif current is not None:
            current.append(line)
    return functions


def _tier_of(symbol):
    for tier in ("avx2", "avx512", "baseline"):
        if symbol.startswith(f"deformrt_{tier}__") or symbol.endswith(f".tier_{tier}"):
            return tier
    return None


@pytest.mark.skipif(shutil.which("objdump") is None, reason="objdump not installed")
def test_code_a_baseline_cpu_can_reach_has_no_avx():
    functions = _disassembly_by_function(LIB)
    tiers = {}
    for symbol in functions:
        tiers.setdefault(_tier_of(symbol), []).append(symbol)
    assert all(len(tiers.get(tier, [])) > 1000 for tier in TIERS), \
        "the library does not hold three tiers: was it linked by `make build`?"
    offenders = {symbol: lines[:3] for symbol, lines in functions.items()
                 if lines and _tier_of(symbol) not in ("avx2", "avx512")}
    assert not offenders, f"{len(offenders)} functions outside the avx2/avx512 tiers use AVX-or-later: " + \
        str(dict(list(offenders.items())[:5]))
    # The check can fail: the avx512 copy of the SIMD16 micro-kernels does use zmm registers, and
    # the avx2 copy ymm registers but no zmm.
    assert any("%zmm" in line for s in tiers["avx512"] for line in functions[s]), "no zmm in the avx512 tier"
    assert any("%ymm" in line for s in tiers["avx2"] for line in functions[s]), "no ymm in the avx2 tier"
    assert not any("%zmm" in line for s in tiers["avx2"] for line in functions[s]), "zmm in the avx2 tier"


QEMU = shutil.which("qemu-x86_64")


@pytest.fixture(scope="module")
def probe_program(tmp_path_factory):
    """A C program that prints drt_cpu_tier and runs the example model, for running under qemu."""
    source = tmp_path_factory.mktemp("probe") / "probe.c"
    source.write_text(textwrap.dedent("""
        #include <deformrt.h>
        #include <stdio.h>
        int main(int argc, char **argv) {
            const char *tier = NULL;
            drt_status status = drt_cpu_tier(&tier);
            if (status != DRT_OK) { printf("tier refused: %s\\n", drt_last_error_message()); }
            else { printf("tier %s\\n", tier); }
            drt_model *model = NULL;
            status = drt_model_load_file(argv[1], &model);
            if (status != DRT_OK) { printf("load refused: %s\\n", drt_last_error_message()); return 1; }
            drt_model_free(model);
            (void)argc;
            return 0;
        }
    """))
    binary = source.with_suffix("")
    subprocess.run(["cc", "-std=c99", "-O1", "-I", os.path.join(ROOT, "include"), str(source), "-L",
                    os.path.dirname(LIB), "-ldeformrt", f"-Wl,-rpath,{os.path.dirname(LIB)}", "-o", str(binary)],
                   check=True)
    return str(binary)


# OpenBLAS's own kernel choice misreads QEMU's CPU models (OPENBLAS_VERBOSE=2 says "Core: Haswell"
# under `-cpu Nehalem`, whose cpuid reports family 6 model 26 and no AVX, and it dies in its AVX
# kernels), so the runs here pin it to the kernels of the emulated CPU: these tests are about
# DeformRT's code.
_OPENBLAS_CORE = {"Nehalem": "Nehalem", "Haswell": "Haswell", "qemu64": "Prescott"}


def _qemu(cpu, command, forced=None):
    env = {k: v for k, v in os.environ.items() if k != "DEFORMRT_CPU"}
    env["OPENBLAS_CORETYPE"] = _OPENBLAS_CORE[cpu]
    if forced:
        env["DEFORMRT_CPU"] = forced
    return subprocess.run([QEMU, "-cpu", cpu, *command], env=env, capture_output=True, text=True, timeout=240)


@pytest.mark.skipif(QEMU is None, reason="qemu-user (qemu-x86_64) not installed")
@pytest.mark.parametrize("cpu,tier", [("Nehalem", "baseline"), ("Haswell", "avx2")])
def test_under_qemu_the_cpu_model_picks_its_tier(probe_program, cpu, tier):
    result = _qemu(cpu, [probe_program, MODEL])
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    assert result.stdout.strip() == f"tier {tier}"


@pytest.mark.skipif(QEMU is None, reason="qemu-user (qemu-x86_64) not installed")
def test_under_qemu_nehalem_runs_the_c_example_like_this_machine():
    result = _qemu("Nehalem", [C_EXAMPLE, MODEL, IMAGE])
    assert result.returncode == 0, (result.returncode, result.stderr)
    assert result.stdout == _run_example("baseline")


@pytest.mark.skipif(QEMU is None, reason="qemu-user (qemu-x86_64) not installed")
def test_under_qemu_a_missing_tier_is_an_error_not_sigill(probe_program):
    # Sanity check of the emulation: the avx512 copy run on "Nehalem" would die with SIGILL; the
    # dispatcher must refuse it instead.
    result = _qemu("Nehalem", [probe_program, MODEL], forced="avx2")
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "tier refused: DEFORMRT_CPU=avx2: this CPU lacks the avx2 tier (it supports up to baseline)" in result.stdout
    assert "load refused: DEFORMRT_CPU=avx2" in result.stdout
    result = _qemu("Haswell", [C_EXAMPLE, MODEL, IMAGE], forced="avx512")
    assert result.returncode == 1 and result.returncode != -signal.SIGILL
    assert "this CPU lacks the avx512 tier (it supports up to avx2)" in result.stderr
    # Below x86-64-v2 (qemu64 has no SSE4.1): nothing runs models, nothing crashes.
    result = _qemu("qemu64", [probe_program, MODEL])
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "below x86-64-v2" in result.stdout
