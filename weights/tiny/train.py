"""Trains the tiny SmolVLM on the scene world (issue 6). Deterministic for a given --seed and
thread count.

    python3 weights/tiny/train.py --out weights/tiny/run   # then export.py

Each step renders --batch fresh scenes; every scene is used three times (English caption,
Russian caption, one question), so the vision tower runs once per scene and the decoder three
times. Only the answer tokens (and the closing <end_of_utterance>) carry loss: the prompt is
given, exactly as the runtime builds it (data.py).
"""
import argparse
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402
import scenes  # noqa: E402
import tokenizer as bpe  # noqa: E402
from model import Config, TinyVLM  # noqa: E402


# Training aid, not exported: a linear probe on the projected image tokens that names, per grid
# cell, whether a shape is there and its kind, size and colour. It gives the vision tower a dense
# signal from the first steps, so the decoder soon has something to read.
AUX = [("present", 2), ("kind", 3), ("size", 2), ("colour", 7)]


def aux_targets(sc):
    t = np.full((9, 4), -100, np.int64)
    t[:, 0] = 0
    for s in sc.shapes:
        t[s.cell] = [1, scenes.KINDS.index(s.kind), scenes.SIZES.index(s.size), scenes.COLOUR_NAMES.index(s.colour)]
    return t


def aux_loss(head, feats, targets):
    out = head(feats.flatten(1)).view(len(feats), 9, -1)  # [B, 9, 14]
    loss, at = 0.0, 0
    for j, (_, n) in enumerate(AUX):
        loss = loss + F.cross_entropy(out[..., at:at + n].reshape(-1, n), targets[..., j].reshape(-1), ignore_index=-100)
        at += n
    return loss


# A second training aid: a probe on each of the 16 image tokens alone (the token covers a 64x64
# pixel square) that names the shape covering most of it: kind, size, colour and grid cell. It
# makes these attributes readable from a single token, which is what the decoder's attention needs
# to find "the circle" by content (the questions) rather than by reading order (the captions).
TOK_AUX = [("present", 2), ("kind", 3), ("size", 2), ("colour", 7), ("cell", 9)]


def token_targets(sc, grid=4):
    step = scenes.CANVAS / grid
    t = np.full((grid * grid, len(TOK_AUX)), -100, np.int64)
    t[:, 0] = 0
    for tok in range(grid * grid):
        ty, tx = divmod(tok, grid)
        best, area = None, 0.04 * step * step  # a shape must cover >= 4 % of the box to count
        for s in sc.shapes:
            r = s.diameter / 2
            w = min(s.cx + r, (tx + 1) * step) - max(s.cx - r, tx * step)
            h = min(s.cy + r, (ty + 1) * step) - max(s.cy - r, ty * step)
            if w > 0 and h > 0 and w * h > area:
                best, area = s, w * h
        if best is not None:
            t[tok] = [1, scenes.KINDS.index(best.kind), scenes.SIZES.index(best.size),
                      scenes.COLOUR_NAMES.index(best.colour), best.cell]
    return t


def token_aux_loss(head, feats, targets):
    out = head(feats)  # [B, 16, 23]
    loss, at = 0.0, 0
    for j, (_, n) in enumerate(TOK_AUX):
        loss = loss + F.cross_entropy(out[..., at:at + n].reshape(-1, n), targets[..., j].reshape(-1), ignore_index=-100)
        at += n
    return loss


# A third training aid (--att-sup): attention supervision at the answer positions. A question that
# names a shape ("What colour is the circle?", "Is there a red square?") supervises one head of the
# last decoder layer to put its attention on the image tokens that show a shape of that kind, and,
# when it names a colour, a head of the other key/value group to put it on the tokens of that
# colour. This gives the question words a direct gradient path to the right image tokens; at run
# time nothing changes (the heads are ordinary heads of the exported decoder).
KIND_OF = {**{k: k for k in scenes.KINDS}, **{v: k for k, v in scenes.KINDS_RU.items()}}
COLOUR_OF = {**{c: c for c in scenes.COLOUR_NAMES}, **{v: c for c, v in scenes.COLOURS_RU.items()}}


def named(prompt):
    """(kind, colour) a question names, each None when it names none."""
    words = prompt.rstrip("?").split()
    kind = KIND_OF.get(words[-1]) if prompt.endswith("?") else None
    colour = COLOUR_OF.get(words[-2]) if kind and len(words) >= 2 else None
    return kind, colour


def attention_targets(prompt, tok_t):
    """[2, 16] bools: image tokens of the named kind, of the named colour (tok_t = token_targets)."""
    kind, colour = named(prompt)
    m = np.zeros((2, len(tok_t)), bool)
    if kind:
        m[0] = (tok_t[:, 0] == 1) & (tok_t[:, 1] == scenes.KINDS.index(kind))
    if colour:
        m[1] = (tok_t[:, 0] == 1) & (tok_t[:, 3] == scenes.COLOUR_NAMES.index(colour))
    return m


def attention_loss(model, ids, labels, att_masks, layer, heads, image_token_id):
    """-log(attention mass on the target tokens), averaged over the answer positions of the rows
    that have targets; heads[0] takes the kind targets, heads[1] the colour targets."""
    att = model.text.layers[layer].attention  # [R, H, T, T]
    img = (ids[0] == image_token_id).nonzero().squeeze(1)  # the 16 image positions (same in every row)
    answer = (labels != -100)  # [R, T]: positions that predict an answer token
    total, n = 0.0, 0
    for j, h in enumerate(heads):
        mask = att_masks[:, j]  # [R, 16]
        rows = mask.any(1)
        if not rows.any():
            continue
        a = att[rows][:, h][:, :, img]  # [r, T, 16]
        mass = (a * mask[rows][:, None, :].float()).sum(-1)  # [r, T]
        sel = answer[rows]
        total = total - torch.log(mass[sel] + 1e-6).mean()
        n += 1
    return total / max(n, 1)


def query_probe_loss(head, model, labels, att_masks, layer, named_t):
    """A probe on the residual stream that the supervised layer reads at the answer positions must
    name the kind and the colour the question asked about (training aid: the query then knows
    what to look for)."""
    block = model.text.layers[layer]
    x = block.input_layernorm(block.input)  # [R, T, D], what the layer's attention reads
    answer = labels != -100
    out = head(x[answer])  # [n, 3 + 7]
    tgt = named_t[:, None, :].expand(-1, labels.shape[1], -1)[answer]  # [n, 2]
    loss = 0.0
    for j, (at, n) in enumerate(((0, 3), (3, 7))):
        if (tgt[:, j] >= 0).any():
            loss = loss + F.cross_entropy(out[:, at:at + n], tgt[:, j], ignore_index=-100)
    return loss


@torch.no_grad()
def held_out(model, tok, cfg, n=100, seed=424242):
    """Teacher-forced exact answers (equal to greedy ones) per task kind on fixed fresh scenes."""
    rng = np.random.default_rng(seed)
    kinds = {"cap_en": [], "cap_ru": [], "how many": [], "colour": [], "where": [], "is there": []}
    rows, which, pix = [], [], []
    for i in range(n):
        sc = scenes.random_scene(rng)
        pix.append(data.pixels(scenes.render(sc)))
        items = [("cap_en", scenes.PROMPT_DESCRIBE_EN, scenes.caption_en(sc)),
                 ("cap_ru", scenes.PROMPT_DESCRIBE_RU, scenes.caption_ru(sc))]
        for _, q, a in scenes.questions(sc, rng):
            k = ("how many" if q.startswith(("How", "Сколько")) else "colour" if q.startswith(("What", "Какого"))
                 else "where" if q.startswith(("Where", "Где")) else "is there")
            items.append((k, q, a))
        for k, q, a in items:
            rows.append((data.sequence(tok, cfg.image_tokens, q, a), i))
            which.append(k)
    feats = model.image_features(torch.from_numpy(np.stack(pix)))
    for at in range(0, len(rows), 256):
        chunk = rows[at:at + 256]
        T = max(len(s) for (s, _), _ in chunk)
        ids = torch.zeros(len(chunk), T, dtype=torch.long)
        labels = torch.full((len(chunk), T), -100, dtype=torch.long)
        for r, ((seq, n_prompt), _) in enumerate(chunk):
            ids[r, :len(seq)] = torch.tensor(seq)
            labels[r, n_prompt - 1:len(seq) - 1] = torch.tensor(seq[n_prompt:])
        pred = model(ids, feats, torch.tensor([i for _, i in chunk])).argmax(-1)
        ok = ((pred == labels) | (labels == -100)).all(1)
        for r in range(len(chunk)):
            kinds[which[at + r]].append(bool(ok[r]))
    return {k: np.mean(v) for k, v in kinds.items() if v}


def pick_tasks(tasks, rng, rows, q_frac):
    """rows = 3: both captions and one question; rows = 1: one of them (a question with
    probability q_frac, else either caption)."""
    question = tasks[2 + rng.integers(len(tasks) - 2)]
    if rows == 3:
        return [tasks[0], tasks[1], question]
    r = rng.random()
    c = (1 - q_frac) / 2
    return [tasks[0] if r < c else tasks[1] if r < 2 * c else question]


def hard_tasks(sc, rng):
    """Like scenes.all_tasks, but the questions are "how many" (already learnt) only 15 % of the
    time, and half of the "is there" negatives are near misses: a shape's colour with another kind,
    or its kind with another colour, so that the answer needs the binding of colour to kind."""
    tasks = scenes.all_tasks(sc, rng)
    caps, qs = tasks[:2], [t for t in tasks[4:] if not t[0].startswith(("Is there", "Есть ли"))]
    present = {(s.colour, s.kind) for s in sc.shapes}
    if rng.random() < 0.5:
        colour, kind = sorted(present)[rng.integers(len(present))]
    else:
        near = [(c, k) for c in scenes.COLOUR_NAMES for k in scenes.KINDS if (c, k) not in present
                and any(c == pc or k == pk for pc, pk in present)]
        absent = [(c, k) for c in scenes.COLOUR_NAMES for k in scenes.KINDS if (c, k) not in present]
        pool = near if near and rng.random() < 0.5 else absent
        colour, kind = pool[rng.integers(len(pool))]
    yes = (colour, kind) in present
    qs.append((f"Is there a {colour} {kind}?", "Yes." if yes else "No."))
    qs.append((f"Есть ли здесь {scenes.COLOURS_RU[colour]} {scenes.KINDS_RU[kind]}?", "Да." if yes else "Нет."))
    if rng.random() < 0.15:  # keep a few counting questions
        qs = tasks[2:4]
    return caps + qs


def make_batch(tok, cfg, rng, n_scenes, rows=3, q_frac=0.3, hard=False, multi=0.0):
    pixels, rows_, image_of_row, aux, tok_aux, att, named_t = [], [], [], [], [], [], []
    for i in range(n_scenes):
        sc = scenes.random_scene(rng)
        if hard and rows == 1:
            # decide first whether this scene gets a question; a question scene has 2-3 shapes
            # with probability `multi` (with one shape "the circle" needs no search)
            is_q = rng.random() < q_frac
            while is_q and len(sc.shapes) < 2 and rng.random() < multi:
                sc = scenes.random_scene(rng)
        pixels.append(data.pixels(scenes.render(sc)))
        aux.append(aux_targets(sc))
        tok_aux.append(token_targets(sc))
        if hard and rows == 1:
            tasks = hard_tasks(sc, rng)
            picked = [tasks[2 + rng.integers(len(tasks) - 2)] if is_q else tasks[rng.integers(2)]]
        else:
            tasks = scenes.all_tasks(sc, rng)
            picked = pick_tasks(tasks, rng, rows, q_frac)
        for prompt, answer in picked:
            rows_.append(data.sequence(tok, cfg.image_tokens, prompt, answer))
            image_of_row.append(i)
            att.append(attention_targets(prompt, tok_aux[-1]))
            kind, colour = named(prompt)
            named_t.append([scenes.KINDS.index(kind) if kind else -100,
                            scenes.COLOUR_NAMES.index(colour) if colour else -100])
    T = max(len(ids) for ids, _ in rows_)
    ids = torch.zeros(len(rows_), T, dtype=torch.long)
    labels = torch.full((len(rows_), T), -100, dtype=torch.long)
    for r, (seq, n_prompt) in enumerate(rows_):
        ids[r, :len(seq)] = torch.tensor(seq)
        # position t predicts token t+1: the answer tokens seq[n_prompt:] are targets
        labels[r, n_prompt - 1:len(seq) - 1] = torch.tensor(seq[n_prompt:])
    return (torch.from_numpy(np.stack(pixels)), ids, labels, torch.tensor(image_of_row), torch.from_numpy(np.stack(aux)),
            torch.from_numpy(np.stack(tok_aux)), torch.from_numpy(np.stack(att)), torch.tensor(named_t))


def warn_if_slow_blas():
    """Debian's torch multiplies matrices with whatever libblas.so.3 is installed. With the
    reference BLAS (libblas3 alone) a step takes 1.38 s instead of 0.30 s with OpenBLAS
    (measured on the build machine): say so before a long run. Uses no random numbers, so the
    run stays the same."""
    a = torch.ones(512, 512)
    a @ a
    t0, n = time.time(), 0
    while time.time() - t0 < 0.2:
        a @ a
        n += 1
    gflops = 2 * 512 ** 3 * n / (time.time() - t0) / 1e9
    if gflops < 20:
        print(f"warning: torch multiplies matrices at {gflops:.1f} GFLOP/s on one thread, which looks like the "
              "reference BLAS; training will be ~4x slower than with OpenBLAS "
              "(Debian: apt-get install libopenblas0-serial)", file=sys.stderr)


def lr_at(step, total, peak, warmup):
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def plot_loss(losses, path):
    """A loss curve as a PNG (log scale), drawn with Pillow so no plotting library is needed."""
    from PIL import Image, ImageDraw
    W, H, m = 640, 360, 40
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    ys = np.log10(np.maximum(np.array(losses), 1e-4))
    k = max(1, len(ys) // 200)  # smooth over windows of k steps
    ys = np.convolve(ys, np.ones(k) / k, mode="valid")
    lo, hi = math.floor(ys.min()), math.ceil(ys.max())
    hi = max(hi, lo + 1)
    d.rectangle([m, m // 2, W - m // 2, H - m], outline="black")
    for e in range(lo, hi + 1):
        y = H - m - (e - lo) / (hi - lo) * (H - 1.5 * m)
        d.line([m, y, W - m // 2, y], fill=(220, 220, 220))
        d.text((2, y - 6), f"1e{e}", fill="black")
    pts = [(m + i / max(1, len(ys) - 1) * (W - 1.5 * m), H - m - (v - lo) / (hi - lo) * (H - 1.5 * m))
           for i, v in enumerate(ys)]
    d.line(pts, fill=(200, 30, 30), width=2)
    d.text((m, H - m + 8), f"training loss (log10) over {len(losses)} steps", fill="black")
    img.save(path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "run"))
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=16, help="scenes per step (x3 sequences)")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--aux", type=float, default=0.5, help="weight of the per-cell probe loss")
    ap.add_argument("--rows", type=int, default=3, choices=[1, 3], help="sequences per scene")
    ap.add_argument("--q-frac", type=float, default=0.3, help="with --rows 1: share of questions")
    ap.add_argument("--seq-mean", action="store_true",
                    help="weight every sequence equally (mean loss per sequence, then over sequences) "
                         "instead of every token, so a two-token answer counts as much as a caption")
    ap.add_argument("--hard-q", action="store_true",
                    help="question sampler: fewer counting questions, near-miss 'is there' negatives")
    ap.add_argument("--multi", type=float, default=0.0,
                    help="with --hard-q: chance that a question scene is redrawn until it has 2-3 shapes")
    ap.add_argument("--tok-aux", type=float, default=0.0, help="weight of the per-token probe loss")
    ap.add_argument("--att-sup", type=float, default=0.0,
                    help="weight of the attention supervision at the answer of a question naming a shape")
    ap.add_argument("--att-layer", type=int, default=-1, help="with --att-sup: decoder layer supervised")
    ap.add_argument("--q-probe", type=float, default=0.0,
                    help="weight of a probe that must read the asked kind/colour at the answer positions, "
                         "from the input of the --att-layer layer")
    ap.add_argument("--eval-every", type=int, default=0, help="held-out accuracy per task every N steps")
    ap.add_argument("--resume", default="", help="continue from this checkpoint.pt (a second schedule)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    warn_if_slow_blas()
    rng = np.random.default_rng(args.seed)

    cfg = Config()
    if args.resume:  # the checkpoint's own vocabulary
        tok = bpe.Tokenizer.load(os.path.join(os.path.dirname(os.path.abspath(args.resume)), "tokenizer.json"))
    else:
        tok = data.build_tokenizer(np.random.default_rng(args.seed + 1000), cfg.vocab_size)
    cfg.vocab_size = len(tok.tokens)
    tok.save(os.path.join(args.out, "tokenizer.json"))
    model = TinyVLM(cfg, tok.special("<image>"))
    if args.resume:
        ck = torch.load(args.resume, map_location="cpu")
        model.load_state_dict(ck["model"])
        print(f"resumed from {args.resume} ({ck['steps']} steps)")
    n_params = sum(p.numel() for p in model.parameters())
    print(f"vocab {cfg.vocab_size}, {n_params / 1e6:.2f} M parameters, {cfg.image_tokens} tokens per image")

    head = torch.nn.Linear(cfg.image_tokens * cfg.t_dim, 9 * sum(n for _, n in AUX))
    tok_head = torch.nn.Linear(cfg.t_dim, sum(n for _, n in TOK_AUX))
    q_head = torch.nn.Linear(cfg.t_dim, 3 + 7)
    params = (list(model.parameters()) + list(head.parameters()) + list(tok_head.parameters())
              + list(q_head.parameters()))
    decay = [p for p in params if p.dim() >= 2]
    other = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": other, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98))
    if args.att_sup or args.q_probe:
        model.text.layers[args.att_layer].keep_attention = True
    losses, t0 = [], time.time()
    for step in range(args.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.steps, args.lr, warmup=50)
        pixels, ids, labels, image_of_row, aux, tok_aux, att, named_t = make_batch(tok, cfg, rng, args.batch, args.rows, args.q_frac,
                                                                          args.hard_q, args.multi)
        feats = model.image_features(pixels)
        logits = model(ids, feats, image_of_row)
        if args.seq_mean:
            tok_loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                       ignore_index=-100, reduction="none").view(labels.shape)
            n_tok = (labels != -100).sum(1).clamp(min=1)
            loss = (tok_loss.sum(1) / n_tok).mean()
        else:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
        loss = loss + args.aux * aux_loss(head, feats, aux)
        if args.tok_aux:
            loss = loss + args.tok_aux * token_aux_loss(tok_head, feats, tok_aux)
        if args.att_sup:
            loss = loss + args.att_sup * attention_loss(model, ids, labels, att, args.att_layer, (0, 2),
                                                        model.image_token_id)
        if args.q_probe:
            loss = loss + args.q_probe * query_probe_loss(q_head, model, labels, att, args.att_layer, named_t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
        if step % 5 == 0 or step == args.steps - 1:
            el = time.time() - t0
            eta = el / (step + 1) * (args.steps - step - 1)
            bar = "#" * int(30 * (step + 1) / args.steps)
            print(f"\r[{bar:<30}] {step + 1}/{args.steps} loss {np.mean(losses[-10:]):.4f} "
                  f"{el / 60:.1f} min, eta {eta / 60:.1f} min", end="", flush=True)
        if args.eval_every and ((step + 1) % args.eval_every == 0 or step == args.steps - 1):
            model.eval()
            acc = held_out(model, tok, cfg)
            model.train()
            print(f"\n  step {step + 1}: " + "  ".join(f"{k} {v:.1%}" for k, v in acc.items()), flush=True)
        if (step + 1) % 500 == 0 or step == args.steps - 1:
            torch.save({"config": cfg.to_dict(), "model": model.state_dict(), "steps": step + 1,
                        "seed": args.seed, "minutes": (time.time() - t0) / 60},
                       os.path.join(args.out, "checkpoint.pt"))
            plot_loss(losses, os.path.join(args.out, "loss.png"))
    print(f"\ndone in {(time.time() - t0) / 60:.1f} min, final loss {np.mean(losses[-50:]):.4f}")


if __name__ == "__main__":
    main()
