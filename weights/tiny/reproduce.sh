#!/bin/sh
# Reproduces the committed tiny model from nothing: one training run, the example scenes, the
# export and the reference logits. 25 minutes on one 2-core build machine, 45-52 on a slower one
# beside other jobs (README.md, "Time"). One thread, so the run is deterministic on a given CPU
# (a second run gave the committed files byte for byte), and OMP_NUM_THREADS=1 keeps OpenMP from
# spinning on a shared box. Needs an optimised BLAS under torch (README.md, "Reproduce").
set -e
cd "$(dirname "$0")"
export OMP_NUM_THREADS=1
PY=${PYTHON:-python3}
# Every training aid from the first step (README.md, "Training"): half of the sequences are
# questions (--q-frac 0.5) on scenes of 2-3 shapes with near-miss negatives (--hard-q --multi),
# every sequence weighs the same (--seq-mean), probes on the image features (--aux, --tok-aux),
# and the last decoder layer is told where to look and what the question named (--att-sup,
# --q-probe). --eval-every only prints held-out accuracy.
$PY train.py --rows 1 --q-frac 0.5 --seq-mean --hard-q --multi 0.7 --tok-aux 1.0 --aux 1.0 \
  --att-sup 1.0 --q-probe 1.0 --steps 5000 --batch 24 --lr 2e-3 --seed 1 --eval-every 1000 --out run
$PY make_examples.py
$PY export.py --run run
