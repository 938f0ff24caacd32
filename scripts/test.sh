#!/usr/bin/env bash
# Every test of av1part: the Rust unit and integration tests (header freshness,
# manifest checks, bad input, thread stress, parity with Python onnxruntime),
# the C harness under gcc -Wall -Wextra -Werror and valgrind memcheck, and the
# Python tests of the dataset tool and the training path.
# Run it through `make test`, which does the set-up first.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
passed=0; failed=0; failed_names=()
suite() {
  local name=$1; shift
  printf '\n===== %s =====\n' "$name"
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); failed_names+=("$name"); fi
}

suite "rust: cargo test" cargo test --release
# build.rs regenerates include/av1part.h; the committed copy must equal it.
suite "header: include/av1part.h is up to date" git diff --exit-code --stat include/av1part.h
suite "c: the README example compiles and runs" tests/readme_example.sh
suite "c: install + pkg-config, shared and static" tests/install_pkgconfig.sh
if [ -f tests/c/Makefile ]; then
  suite "c: harness (gcc -Wall -Wextra -Werror) + valgrind" make -C tests/c check
fi
if [ -d training/tests ]; then
  suite "python: pytest training/tests" .venv/bin/python -m pytest -q training/tests
fi

printf '\n===== summary =====\n'
[ ${#failed_names[@]} -gt 0 ] && printf 'failed suite: %s\n' "${failed_names[@]}"
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
