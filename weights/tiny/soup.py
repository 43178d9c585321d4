"""Averages two checkpoints of the same model, weight by weight: a*second + (1-a)*first.

    python3 weights/tiny/soup.py run6 run7 0.9 --out run8

Used for the last step of reproduce.sh: stage 7 (run7) answers the questions that name a shape
but lost a little on the captions; 90 % of it plus 10 % of stage 6 (run6, which it was trained
from) keeps both (a "model soup": checkpoints fine-tuned from one another lie in one basin).
"""
import argparse
import os
import shutil

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("first")
    ap.add_argument("second")
    ap.add_argument("a", type=float, help="weight of the second checkpoint")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    one = torch.load(os.path.join(args.first, "checkpoint.pt"), map_location="cpu")
    two = torch.load(os.path.join(args.second, "checkpoint.pt"), map_location="cpu")
    two["model"] = {k: args.a * v + (1 - args.a) * one["model"][k] if v.is_floating_point() else v
                    for k, v in two["model"].items()}
    two["soup"] = {"first": args.first, "second": args.second, "a": args.a}
    os.makedirs(args.out, exist_ok=True)
    torch.save(two, os.path.join(args.out, "checkpoint.pt"))
    shutil.copy(os.path.join(args.second, "tokenizer.json"), args.out)
    print(f"wrote {args.out}/checkpoint.pt = {args.a} x {args.second} + {1 - args.a:.2f} x {args.first}")


if __name__ == "__main__":
    main()
