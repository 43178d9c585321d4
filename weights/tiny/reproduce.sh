#!/bin/sh
# Reproduces the committed tiny model from nothing: eight training stages (the same model,
# resumed with new schedules), the example scenes, the export and the reference logits.
# About 2 hours on 2 busy CPU cores (over the issue's 45 minutes); OMP_NUM_THREADS=1 avoids OpenMP spinning on a shared box.
set -e
cd "$(dirname "$0")"
export OMP_NUM_THREADS=1
PY=${PYTHON:-python3}
# Stage 1: every scene read three times (English caption, Russian caption, one question).
$PY train.py --steps 480 --batch 12 --seed 1 --out run
# Stages 2 and 3: one sequence per scene, twice as many scenes per step, probe weight 1.
$PY train.py --resume run/checkpoint.pt --rows 1 --steps 450 --batch 24 --aux 1.0 --seed 2 --lr 2e-3 --out run2
$PY train.py --resume run2/checkpoint.pt --rows 1 --steps 600 --batch 24 --aux 1.0 --seed 3 --lr 1.5e-3 --out run3
# Stage 4: half of the sequences are questions (one sequence per scene from here on).
$PY train.py --resume run3/checkpoint.pt --rows 1 --q-frac 0.5 --steps 1000 --batch 24 --aux 1.0 --seed 4 --lr 1.5e-3 --out run4
# Stage 5: 60 % questions, a lower peak rate.
$PY train.py --resume run4/checkpoint.pt --rows 1 --q-frac 0.6 --steps 1200 --batch 24 --aux 1.0 --seed 5 --lr 1e-3 --out run5
# Stage 6: every sequence weighs the same (--seq-mean), a probe on each image token (--tok-aux),
# questions on scenes of 2-3 shapes with near-miss "is there" negatives (--hard-q --multi).
$PY train.py --resume run5/checkpoint.pt --rows 1 --q-frac 0.5 --seq-mean --hard-q --multi 0.7 --tok-aux 1.0 --steps 3500 --batch 24 --aux 1.0 --seed 7 --lr 1.5e-3 --out run6
# Stage 7: the questions that name a shape. Training-only aids: the last decoder layer's heads 0
# and 2 are told where to look at the answer (--att-sup: the image tokens of the named kind / the
# named colour), and a probe must read the named kind and colour from what that layer reads there
# (--q-probe); the per-cell probe is off (--aux 0). --eval-every only prints held-out accuracy.
$PY train.py --resume run6/checkpoint.pt --rows 1 --q-frac 0.5 --seq-mean --hard-q --multi 0.7 --aux 0 --att-sup 1.0 --q-probe 1.0 --steps 1500 --batch 24 --lr 1e-3 --seed 9 --eval-every 100 --out run7
# Last step, no training: 90 % of stage 7 plus 10 % of stage 6, weight by weight (stage 7 alone
# answers 98 % of the questions but writes 94 % of the English captions; the average keeps both).
$PY soup.py run6 run7 0.9 --out run8
$PY make_examples.py
$PY export.py --run run8
