# The two commands of a fresh machine: `make demo` (the main job) and
# `make test` (every test). Both run the idempotent set-up first.
.PHONY: setup demo test bench install eval

setup:
	scripts/setup.sh

demo: setup
	scripts/demo.sh

test: setup
	scripts/test.sh

bench: setup
	scripts/bench.sh

install: setup
	scripts/install.sh $(PREFIX)

eval: setup
	encoder/eval $(EVAL_ARGS)
