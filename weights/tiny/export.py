"""Writes the trained model as the GGUF pair of a published SmolVLM (MODELS.md §3.12, §3.13):
a `llama` text model with the tokenizer, and an `idefics3` mmproj with the vision tower and
the projector. Then the reference logits for the stored test scenes (tests/data/tiny/).

    python3 weights/tiny/export.py --run weights/tiny/run --out weights/tiny
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402
import gguf_io  # noqa: E402
import tokenizer as bpe  # noqa: E402
from model import Config, TinyVLM  # noqa: E402
from gguf_io import T_F32, T_I32, T_STR  # noqa: E402

TEXT_FILE = "tiny-smolvlm-text-f32.gguf"
MMPROJ_FILE = "mmproj-tiny-smolvlm-f32.gguf"

# SmolVLM-Instruct's chat template (chat_template.json), verbatim.
CHAT_TEMPLATE = ("<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
                 "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
                 "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
                 "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
                 "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}")


def np32(t):
    return t.detach().cpu().float().numpy()


def permute_rope(w, n_head):
    """HF rotate_half rows -> ggml adjacent-pair rows, per head (llama.cpp's converter):
    GGUF_row[h·d + 2i + p] = HF_row[h·d + p·(d/2) + i]."""
    out, inp = w.shape
    d = out // n_head
    return w.reshape(n_head, 2, d // 2, inp).swapaxes(1, 2).reshape(out, inp)


def write_text(path, model, cfg, tok):
    w = gguf_io.Writer()
    w.str("general.architecture", "llama")
    w.str("general.name", "tiny-smolvlm (glimpse scene world)")
    w.u32("general.file_type", 0)
    hd = cfg.t_dim // cfg.t_heads
    w.u32("llama.block_count", cfg.t_layers)
    w.u32("llama.context_length", cfg.context)
    w.u32("llama.embedding_length", cfg.t_dim)
    w.u32("llama.feed_forward_length", cfg.t_ffn)
    w.u32("llama.attention.head_count", cfg.t_heads)
    w.u32("llama.attention.head_count_kv", cfg.t_kv_heads)
    w.u32("llama.attention.key_length", hd)
    w.u32("llama.attention.value_length", hd)
    w.u32("llama.rope.dimension_count", hd)
    w.f32("llama.rope.freq_base", cfg.rope_theta)
    w.f32("llama.attention.layer_norm_rms_epsilon", cfg.t_eps)
    w.u32("llama.vocab_size", cfg.vocab_size)
    w.str("tokenizer.ggml.model", "gpt2")
    w.str("tokenizer.ggml.pre", "smollm")
    w.arr("tokenizer.ggml.tokens", T_STR, tok.tokens)
    w.arr("tokenizer.ggml.token_type", T_I32, [3 if t in bpe.SPECIALS else 1 for t in tok.tokens])
    w.arr("tokenizer.ggml.merges", T_STR, [f"{a} {b}" for a, b in tok.merges])
    w.u32("tokenizer.ggml.bos_token_id", tok.special("<|im_start|>"))
    w.u32("tokenizer.ggml.eos_token_id", tok.special("<end_of_utterance>"))
    w.u32("tokenizer.ggml.unknown_token_id", tok.special("<|endoftext|>"))
    w.u32("tokenizer.ggml.padding_token_id", tok.special("<|im_end|>"))
    w.bool("tokenizer.ggml.add_bos_token", False)
    w.str("tokenizer.chat_template", CHAT_TEMPLATE)

    t = model.text
    w.tensor("token_embd.weight", np32(t.embed_tokens.weight))  # output.weight absent: tied
    w.tensor("output_norm.weight", np32(t.norm.weight))
    for i, L in enumerate(t.layers):
        b = f"blk.{i}."
        w.tensor(b + "attn_norm.weight", np32(L.input_layernorm.weight))
        w.tensor(b + "attn_q.weight", permute_rope(np32(L.q_proj.weight), cfg.t_heads))
        w.tensor(b + "attn_k.weight", permute_rope(np32(L.k_proj.weight), cfg.t_kv_heads))
        w.tensor(b + "attn_v.weight", np32(L.v_proj.weight))
        w.tensor(b + "attn_output.weight", np32(L.o_proj.weight))
        w.tensor(b + "ffn_norm.weight", np32(L.post_attention_layernorm.weight))
        w.tensor(b + "ffn_gate.weight", np32(L.gate_proj.weight))
        w.tensor(b + "ffn_up.weight", np32(L.up_proj.weight))
        w.tensor(b + "ffn_down.weight", np32(L.down_proj.weight))
    w.write(path)


def write_mmproj(path, model, cfg):
    w = gguf_io.Writer()
    w.str("general.architecture", "clip")
    w.str("general.name", "tiny-smolvlm mmproj")
    w.u32("general.file_type", 0)
    w.bool("clip.has_vision_encoder", True)
    w.str("clip.projector_type", "idefics3")
    w.u32("clip.vision.image_size", cfg.image_size)
    w.u32("clip.vision.patch_size", cfg.patch_size)
    w.u32("clip.vision.embedding_length", cfg.v_dim)
    w.u32("clip.vision.feed_forward_length", cfg.v_ffn)
    w.u32("clip.vision.block_count", cfg.v_layers)
    w.u32("clip.vision.attention.head_count", cfg.v_heads)
    w.f32("clip.vision.attention.layer_norm_epsilon", cfg.v_eps)
    w.u32("clip.vision.projection_dim", cfg.t_dim)
    w.arr("clip.vision.image_mean", T_F32, [0.5, 0.5, 0.5])
    w.arr("clip.vision.image_std", T_F32, [0.5, 0.5, 0.5])
    w.bool("clip.use_gelu", True)
    w.u32("clip.vision.projector.scale_factor", cfg.scale_factor)
    # = image_size: a 256x256 picture is one frame (no tiles, no global image)
    w.u32("clip.vision.preproc_image_size", cfg.image_size)

    v = model.vision
    w.tensor("v.patch_embd.weight", np32(v.patch_embedding.weight))  # [Dv,3,P,P] -> ne [P,P,3,Dv]
    w.tensor("v.patch_embd.bias", np32(v.patch_embedding.bias))
    w.tensor("v.position_embd.weight", np32(v.position_embedding.weight))
    for i, L in enumerate(v.layers):
        b = f"v.blk.{i}."
        for name, mod in (("ln1", L.layer_norm1), ("attn_q", L.q_proj), ("attn_k", L.k_proj), ("attn_v", L.v_proj),
                          ("attn_out", L.out_proj), ("ln2", L.layer_norm2), ("ffn_up", L.fc1), ("ffn_down", L.fc2)):
            w.tensor(b + name + ".weight", np32(mod.weight))
            w.tensor(b + name + ".bias", np32(mod.bias))
    w.tensor("v.post_ln.weight", np32(v.post_layernorm.weight))
    w.tensor("v.post_ln.bias", np32(v.post_layernorm.bias))
    w.tensor("mm.model.fc.weight", np32(model.connector.proj.weight))
    w.write(path)


def load(run):
    ck = torch.load(os.path.join(run, "checkpoint.pt"), map_location="cpu")
    cfg = Config(**ck["config"])
    tok = bpe.Tokenizer.load(os.path.join(run, "tokenizer.json"))
    model = TinyVLM(cfg, tok.special("<image>"))
    model.load_state_dict(ck["model"])
    model.eval()
    return model, cfg, tok, ck


def write_reference(model, cfg, tok, examples_dir, out_dir):
    """For each examples/*.png listed in examples/captions.json: the exact prompt ids (the
    English description prompt) and the logits of the last prompt position."""
    from PIL import Image
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(examples_dir, "captions.json"), encoding="utf-8") as f:
        items = json.load(f)
    refs = []
    for it in items[:3]:
        rgb = np.asarray(Image.open(os.path.join(examples_dir, it["image"])).convert("RGB"))
        ids = tok.encode(data.prompt_text(data.scenes.PROMPT_DESCRIBE_EN, cfg.image_tokens))
        with torch.no_grad():
            feats = model.image_features(torch.from_numpy(data.pixels(rgb))[None])
            logits = model(torch.tensor([ids]), feats, torch.tensor([0]))[0, -1]
        refs.append({"image": it["image"], "prompt": data.scenes.PROMPT_DESCRIBE_EN, "ids": ids,
                     "logits": [float(x) for x in logits]})
    with open(os.path.join(out_dir, "reference_logits.json"), "w") as f:
        json.dump(refs, f)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default=os.path.join(here, "run"))
    ap.add_argument("--out", default=here)
    ap.add_argument("--examples", default=os.path.join(root, "examples"))
    ap.add_argument("--ref-out", default=os.path.join(root, "tests", "data", "tiny"))
    args = ap.parse_args()
    model, cfg, tok, _ = load(args.run)
    write_text(os.path.join(args.out, TEXT_FILE), model, cfg, tok)
    write_mmproj(os.path.join(args.out, MMPROJ_FILE), model, cfg)
    if os.path.exists(os.path.join(args.examples, "captions.json")):
        write_reference(model, cfg, tok, args.examples, args.ref_out)
    print("wrote", TEXT_FILE, MMPROJ_FILE)


if __name__ == "__main__":
    main()
