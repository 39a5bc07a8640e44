#!/usr/bin/env bash
# Installs what building and testing smelt needs on a Debian 12 machine, and
# only what is missing: make, a C toolchain, python3 with venv, CBC (the
# ILP extractor's solver, linked by smelt-passes' default `ilp` feature),
# LLVM 22 (code generation), the mold linker, and hipcc with the ROCm
# device libraries (HIP compile checks).
# Used by .ci/run and by `make demo` / `make test`, so the README's two
# commands work on a fresh machine. Needs root or sudo only when something
# is missing.
set -euo pipefail

# apt-get as root directly, otherwise through sudo when there is one.
APT_UPDATED=0
apt_install() {
    local apt=(apt-get)
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            apt=(sudo apt-get)
        else
            echo "error: need to install $* but not root and no sudo; install it and rerun" >&2
            exit 1
        fi
    fi
    if [ "$APT_UPDATED" -eq 0 ]; then
        DEBIAN_FRONTEND=noninteractive "${apt[@]}" update -q
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -q --no-install-recommends "$@"
}

venv_works() {
    local tmp
    tmp=$(mktemp -d)
    # Debian's python3 lacks ensurepip without python3-venv: venv then fails
    # or leaves an environment without pip.
    if python3 -m venv "$tmp/v" >/dev/null 2>&1 && [ -x "$tmp/v/bin/pip" ]; then
        rm -rf "$tmp"
        return 0
    fi
    rm -rf "$tmp"
    return 1
}

prerequisites() {
    local missing=()
    command -v make >/dev/null 2>&1 || missing+=(make)
    command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
    command -v python3 >/dev/null 2>&1 || missing+=(python3)
    # CBC for ILP extraction (smelt-passes' default `ilp` feature links it).
    [ -e /usr/include/coin/Cbc_C_Interface.h ] || missing+=(coinor-libcbc-dev coinor-libclp-dev)
    # LLVM 22 (bookworm-security) for smelt-codegen (inkwell, statically
    # linked) and mold to link the large binaries that result.
    [ -x /usr/lib/llvm-22/bin/llvm-config ] || missing+=(llvm-22-dev libpolly-22-dev libzstd-dev clang-22 lld-22)
    command -v mold >/dev/null 2>&1 || missing+=(mold)
    # HIP: the test suite compiles every HIP kernel for gfx90a with Debian's
    # hipcc (+ the ROCm device libraries) and for gfx942 with clang-22.
    command -v hipcc >/dev/null 2>&1 || missing+=(hipcc)
    [ -d /usr/lib/x86_64-linux-gnu/amdgcn/bitcode ] || missing+=(rocm-device-libs)
    if [ ${#missing[@]} -gt 0 ]; then
        apt_install "${missing[@]}"
    fi
    if ! venv_works; then
        local minor
        minor=$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
        apt_install python3-venv "python${minor}-venv"
        venv_works || { echo "error: python3 -m venv still fails" >&2; exit 1; }
    fi
    if command -v rustup >/dev/null 2>&1; then
        cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
        cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
    fi
    rustc --version
    cargo --version
    python3 --version
    echo "cores: $(nproc)"
}


prerequisites
