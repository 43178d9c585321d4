"""The tiny SmolVLM: a SigLIP-style ViT, the Idefics3 pixel-shuffle projector and a Llama
decoder, written out in plain PyTorch with the module names of the Hugging Face model
(modeling_smolvlm.py) so export.py can map each tensor to its GGUF name.

    pixels [B,3,256,256] -> 32x32 patches [B,64,Dv] -> ViT -> post-LN
      -> pixel shuffle (2x2 patches -> one token) [B,16,4*Dv] -> Linear -> [B,16,Dt]
      -> written over the <image> token embeddings -> Llama decoder -> logits
"""
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Config:
    image_size: int = 256
    patch_size: int = 32
    v_dim: int = 96
    v_layers: int = 3
    v_heads: int = 3
    v_ffn: int = 256
    v_eps: float = 1e-6
    scale_factor: int = 2
    t_dim: int = 96
    t_layers: int = 3
    t_heads: int = 4
    t_kv_heads: int = 2
    t_ffn: int = 256
    t_eps: float = 1e-5
    rope_theta: float = 10000.0
    vocab_size: int = 1024
    context: int = 256

    @property
    def image_tokens(self):
        g = self.image_size // self.patch_size
        return (g // self.scale_factor) ** 2

    def to_dict(self):
        return asdict(self)


def gelu_tanh(x):
    return F.gelu(x, approximate="tanh")


class VisionBlock(nn.Module):
    """Pre-LN encoder layer: x += out(MHA(LN1 x)); x += fc2(gelu_tanh(fc1(LN2 x)))."""

    def __init__(self, c):
        super().__init__()
        d = c.v_dim
        self.heads = c.v_heads
        self.layer_norm1 = nn.LayerNorm(d, eps=c.v_eps)
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(d, d) for _ in range(4))
        self.layer_norm2 = nn.LayerNorm(d, eps=c.v_eps)
        self.fc1 = nn.Linear(d, c.v_ffn)
        self.fc2 = nn.Linear(c.v_ffn, d)

    def forward(self, x):  # [B, N, D]
        B, N, D = x.shape
        h = self.layer_norm1(x)
        q, k, v = (p(h).view(B, N, self.heads, -1).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))
        att = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
        a = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, N, D)
        x = x + self.out_proj(a)
        return x + self.fc2(gelu_tanh(self.fc1(self.layer_norm2(x))))


class Vision(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        n = (c.image_size // c.patch_size) ** 2
        self.patch_embedding = nn.Conv2d(3, c.v_dim, c.patch_size, c.patch_size)
        self.position_embedding = nn.Embedding(n, c.v_dim)
        self.layers = nn.ModuleList(VisionBlock(c) for _ in range(c.v_layers))
        self.post_layernorm = nn.LayerNorm(c.v_dim, eps=c.v_eps)

    def forward(self, pixels):  # [B, 3, H, W] normalised to [-1, 1]
        x = self.patch_embedding(pixels).flatten(2).transpose(1, 2)  # [B, N, Dv], patch p = r*g + c
        x = x + self.position_embedding.weight[None]
        for layer in self.layers:
            x = layer(x)
        return self.post_layernorm(x)


def pixel_shuffle(x, s):
    """Idefics3's space-to-depth, the HF op sequence verbatim: [B, N, D] -> [B, N/s², D·s²];
    output token (R, C) concatenates the s×s block of patches (R·s+dh, C·s+dw), row-major."""
    B, N, D = x.shape
    g = int(math.isqrt(N))
    x = x.view(B, g, g, D).view(B, g, g // s, D * s).permute(0, 2, 1, 3)
    x = x.reshape(B, g // s, g // s, D * s * s).permute(0, 2, 1, 3)
    return x.reshape(B, N // (s * s), D * s * s)


class Connector(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.s = c.scale_factor
        self.proj = nn.Linear(c.v_dim * c.scale_factor ** 2, c.t_dim, bias=False)

    def forward(self, x):
        return self.proj(pixel_shuffle(x, self.s))


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class TextBlock(nn.Module):
    """Llama layer (MODELS.md §1.5): RMSNorm, GQA attention with HF (rotate_half) RoPE, SwiGLU."""

    def __init__(self, c):
        super().__init__()
        d, hd = c.t_dim, c.t_dim // c.t_heads
        self.heads, self.kv_heads, self.hd = c.t_heads, c.t_kv_heads, hd
        self.input_layernorm = RMSNorm(d, c.t_eps)
        self.q_proj = nn.Linear(d, c.t_heads * hd, bias=False)
        self.k_proj = nn.Linear(d, c.t_kv_heads * hd, bias=False)
        self.v_proj = nn.Linear(d, c.t_kv_heads * hd, bias=False)
        self.o_proj = nn.Linear(c.t_heads * hd, d, bias=False)
        self.post_attention_layernorm = RMSNorm(d, c.t_eps)
        self.gate_proj = nn.Linear(d, c.t_ffn, bias=False)
        self.up_proj = nn.Linear(d, c.t_ffn, bias=False)
        self.down_proj = nn.Linear(c.t_ffn, d, bias=False)
        self.keep_attention = False  # training aid (train.py --att-sup): keep the softmax in self.attention and the input in self.input

    def forward(self, x, cos, sin, mask):
        B, T, D = x.shape
        if self.keep_attention:
            self.input = x  # [B, T, D], the residual stream this layer reads
        h = self.input_layernorm(x)
        q = self.q_proj(h).view(B, T, self.heads, self.hd).transpose(1, 2)
        k = self.k_proj(h).view(B, T, self.kv_heads, self.hd).transpose(1, 2)
        v = self.v_proj(h).view(B, T, self.kv_heads, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = self.heads // self.kv_heads  # query head h uses kv head h // rep
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        att = ((q @ k.transpose(-1, -2)) / math.sqrt(self.hd) + mask).softmax(-1)
        if self.keep_attention:
            self.attention = att  # [B, heads, T, T]
        a = (att @ v).transpose(1, 2).reshape(B, T, -1)
        x = x + self.o_proj(a)
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Text(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed_tokens = nn.Embedding(c.vocab_size, c.t_dim)
        self.layers = nn.ModuleList(TextBlock(c) for _ in range(c.t_layers))
        self.norm = RMSNorm(c.t_dim, c.t_eps)
        hd = c.t_dim // c.t_heads
        inv = 1.0 / (c.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
        ang = torch.arange(c.context, dtype=torch.float32)[:, None] * inv[None]
        ang = torch.cat((ang, ang), dim=-1)
        self.register_buffer("cos", ang.cos(), persistent=False)
        self.register_buffer("sin", ang.sin(), persistent=False)

    def forward(self, embeds):  # [B, T, Dt] -> logits [B, T, V] (lm_head tied to the embeddings)
        T = embeds.shape[1]
        mask = torch.full((T, T), float("-inf")).triu(1)
        x = embeds
        for layer in self.layers:
            x = layer(x, self.cos[:T], self.sin[:T], mask)
        return self.norm(x) @ self.embed_tokens.weight.t()


class TinyVLM(nn.Module):
    def __init__(self, c, image_token_id):
        super().__init__()
        self.c = c
        self.image_token_id = image_token_id
        self.vision = Vision(c)
        self.connector = Connector(c)
        self.text = Text(c)
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def image_features(self, pixels):  # [B,3,H,W] -> [B, image_tokens, Dt]
        return self.connector(self.vision(pixels))

    def forward(self, ids, features, image_of_row=None):
        """ids [R, T]; features [B, n, Dt]; row r's k-th <image> takes features[image_of_row[r]][k]
        (the Idefics3 merger: image positions are overwritten, in order)."""
        emb = self.text.embed_tokens(ids)
        if image_of_row is not None:
            feats = features[image_of_row]  # [R, n, Dt]
            pos = ids == self.image_token_id
            emb = emb.masked_scatter(pos[..., None], feats.reshape(-1, feats.shape[-1]).to(emb.dtype))
        return self.text(emb)
