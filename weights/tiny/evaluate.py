"""Greedy answers of the PyTorch model on fresh scenes (a quick check before export; the real
figures come from `glimpse eval-scenes`, which runs the exported files)."""
import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402
import scenes  # noqa: E402
from export import load  # noqa: E402


@torch.no_grad()
def greedy(model, tok, feats, prompt, n_img, max_new=40):
    ids = tok.encode(data.prompt_text(prompt, n_img))
    eou = tok.special(data.EOU)
    start = len(ids)
    for _ in range(max_new):
        nxt = int(model(torch.tensor([ids]), feats, torch.tensor([0]))[0, -1].argmax())
        if nxt == eou:
            break
        ids.append(nxt)
    return tok.decode(ids[start:]).strip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "run"))
    ap.add_argument("-n", type=int, default=50)
    ap.add_argument("--seed", type=int, default=99)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model, cfg, tok, _ = load(args.run)
    rng = np.random.default_rng(args.seed)
    right = {"en": 0, "ru": 0, "q": 0}
    nq = 0
    for i in range(args.n):
        sc = scenes.random_scene(rng)
        feats = model.image_features(torch.from_numpy(data.pixels(scenes.render(sc)))[None])
        for lang, prompt, want in (("en", scenes.PROMPT_DESCRIBE_EN, scenes.caption_en(sc)),
                                   ("ru", scenes.PROMPT_DESCRIBE_RU, scenes.caption_ru(sc))):
            got = greedy(model, tok, feats, prompt, cfg.image_tokens)
            right[lang] += got == want
            if got != want and i < 10:
                print(f"{lang}: got {got!r}\n    want {want!r}")
        for _, q, a in scenes.questions(sc, rng)[:4]:
            nq += 1
            right["q"] += greedy(model, tok, feats, q, cfg.image_tokens) == a
    print(f"en {right['en'] / args.n:.1%}  ru {right['ru'] / args.n:.1%}  questions {right['q'] / nq:.1%}")


if __name__ == "__main__":
    main()
