"""What the model reads: normalised pixels and the token sequence the runtime builds.

The prompt is SmolVLM's chat template (MODELS.md §3.9) for one user turn with the image first:
    <|im_start|>User:<image>Describe this image.<end_of_utterance>\\nAssistant:
with the single-frame image expansion (no tiles: the 256x256 scene is exactly one tile)
    <fake_token_around_image><global-img><image>x16<fake_token_around_image>
and the answer the model learns to continue with: " A big red circle at the top left.<end_of_utterance>".
"""
import numpy as np

import scenes
import tokenizer

EOU = "<end_of_utterance>"


def pixels(rgb):
    """uint8 [H, W, 3] -> float32 [3, H, W], (v/255 - 0.5)/0.5 (SmolVLM's mean = std = 0.5)."""
    return ((rgb.astype(np.float32) / 255.0 - 0.5) / 0.5).transpose(2, 0, 1).copy()


def prompt_text(prompt, n_image_tokens):
    image = "<fake_token_around_image><global-img>" + "<image>" * n_image_tokens + "<fake_token_around_image>"
    return "<|im_start|>User:" + image + prompt + EOU + "\nAssistant:"


def sequence(tok, n_image_tokens, prompt, answer):
    """(ids, n_prompt): the prompt ids then the answer ids and <end_of_utterance>."""
    ids = tok.encode(prompt_text(prompt, n_image_tokens))
    return ids + tok.encode(" " + answer) + [tok.special(EOU)], len(ids)


def build_tokenizer(rng, vocab_size, n_scenes=3000):
    texts = []
    for _ in range(n_scenes):
        sc = scenes.random_scene(rng, jitter=False)
        for prompt, answer in scenes.all_tasks(sc, rng):
            texts += [prompt_text(prompt, 0), " " + answer]
    return tokenizer.train(texts, vocab_size)
