# DeformRT build, demo and test entry points. `make demo` and `make test` work on a fresh machine:
# they install the Debian and pip packages they need first.

SHELL := /bin/bash
PYTHON ?= python3
# The shipped library uses the host's widest SIMD; SwiftPM dependents build without these flags.
TARGET_CPU ?= $(shell if grep -qw avx512f /proc/cpuinfo 2>/dev/null; then \
                   if grep -q AuthenticAMD /proc/cpuinfo; then echo znver4; else echo skylake-avx512; fi; \
                 elif grep -qw avx2 /proc/cpuinfo 2>/dev/null; then echo haswell; else echo x86-64; fi)
# Debian's serial OpenBLAS: DeformRT threads its kernels itself and calls sgemm on one thread, so
# the pthread build's pool would only be idle threads that busy-wait for ~0.1 s after loading,
# taking a core from the session's own threads (measured: small nets 10x slower on 2 threads
# right after load). The run path searches its folder before the system's default variant.
OPENBLAS_SERIAL_DIR := /usr/lib/$(shell gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)/openblas-serial
RELEASE_FLAGS := -c release -Xswiftc -static-stdlib -Xswiftc -target-cpu -Xswiftc $(TARGET_CPU) \
                 -Xlinker -L$(OPENBLAS_SERIAL_DIR) -Xlinker -rpath -Xlinker $(OPENBLAS_SERIAL_DIR) \
                 $(if $(filter x86-64,$(TARGET_CPU)),,-Xswiftc -DDEFORMRT_WIDE_SIMD) \
                 -Xlinker --version-script=$(CURDIR)/abi/deformrt.map \
                 -Xswiftc -Xclang-linker -Xswiftc -fuse-ld=lld
BIN := $(CURDIR)/.build/release
LIB := $(BIN)/libdeformrt.so
DEBIAN_PACKAGES := libopenblas-dev libopenblas-serial-dev libonnx-dev protobuf-compiler valgrind binutils gcc g++ cmake pkg-config
PIP_PACKAGES := numpy onnx onnxruntime pytest wheel setuptools pillow
# Only the tests need these: the Ray example's test runs a local Ray cluster.
TEST_PIP_PACKAGES := ray[data]
export DEFORMRT_LIBRARY := $(LIB)

.PHONY: all deps test-deps build lib python examples demo test test-swift test-python test-examples bench clean

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
	@mkdir -p build/bin && ln -sf $(BIN)/deformrt-cli build/bin/deformrt

lib: build

# Installs the Python binding with the freshly built library inside it.
python: build
	cp $(LIB) bindings/python/src/deformrt/libdeformrt.so
	$(PYTHON) -m pip install -q --disable-pip-version-check --no-build-isolation ./bindings/python

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

test-python: examples test-deps
	$(PYTHON) -m pytest -q Tests/python bindings/python/tests

test: build test-swift test-python

bench: python
	$(PYTHON) bench/conv.py

clean:
	rm -rf .build build bindings/python/src/deformrt/libdeformrt.so

include fuzz/Makefile.inc

# ---- Install (C and C++ consumers: header, library, pkg-config, CMake package) -----------------
# `make install PREFIX=/opt/deformrt` (default /usr/local; DESTDIR is honoured for staging) puts
#   include/deformrt.h, lib/libdeformrt.so, bin/deformrt,
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
	install -m 755 $(BIN)/deformrt-cli $(INSTALL_ROOT)/bin/deformrt
	sed 's/@VERSION@/$(DRT_VERSION)/' packaging/deformrt.pc.in > $(INSTALL_ROOT)/lib/pkgconfig/deformrt.pc
	cp packaging/DeformRTConfig.cmake.in $(INSTALL_ROOT)/lib/cmake/DeformRT/DeformRTConfig.cmake
	sed 's/@VERSION@/$(DRT_VERSION)/; s/@VERSION_MAJOR@/$(DRT_VERSION_MAJOR)/; s/@VERSION_MINOR@/$(DRT_VERSION_MINOR)/' \
	  packaging/DeformRTConfigVersion.cmake.in > $(INSTALL_ROOT)/lib/cmake/DeformRT/DeformRTConfigVersion.cmake
	@echo "installed DeformRT $(DRT_VERSION) into $(INSTALL_ROOT)"

uninstall:
	rm -f $(INSTALL_ROOT)/include/deformrt.h $(INSTALL_ROOT)/lib/libdeformrt.so $(INSTALL_ROOT)/bin/deformrt \
	  $(INSTALL_ROOT)/lib/pkgconfig/deformrt.pc $(INSTALL_ROOT)/lib/cmake/DeformRT/DeformRTConfig.cmake \
	  $(INSTALL_ROOT)/lib/cmake/DeformRT/DeformRTConfigVersion.cmake
	-rmdir $(INSTALL_ROOT)/lib/cmake/DeformRT 2>/dev/null

# The custom-operator example (examples/c/custom_op.c; Tests/python/test_custom_ops.py builds and runs it too).
build/bin/c-custom-op-example: examples/c/custom_op.c include/deformrt.h build
	$(CC) -std=c99 -O2 -Wall -Wextra -Werror -Iinclude examples/c/custom_op.c -L$(BIN) -ldeformrt -lm \
	  -Wl,-rpath,$(BIN) -o $@
