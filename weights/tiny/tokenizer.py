"""A byte-level BPE tokenizer trained on the scene corpus, laid out like SmolLM2's (MODELS.md
§3.10) so the runtime loads it as `tokenizer.ggml.model = gpt2`, `pre = smollm`.

Text -> (split at special tokens) -> pieces by the GPT-2 pre-tokenizer -> bytes mapped to
printable characters (GPT-2 byte map: space -> 'Ġ', '\\n' -> 'Ċ') -> merges by rank.

Vocabulary order: <|endoftext|>, <|im_start|>, <|im_end|>, the 256 byte tokens, the learned
merges, then SmolVLM's image tokens and <end_of_utterance> (the end-of-turn/eos token).
"""
import json
from collections import Counter

HEAD_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TAIL_SPECIALS = (["<global-img>"] + [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]
                 + ["<fake_token_around_image>", "<image>", "<end_of_utterance>"])
SPECIALS = HEAD_SPECIALS + TAIL_SPECIALS


def bytes_to_unicode():
    """GPT-2's byte -> character map: printable bytes map to themselves, the other 68 to
    U+0100.. in increasing byte order."""
    keep = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


BYTE_CHAR = bytes_to_unicode()
CHAR_BYTE = {c: b for b, c in BYTE_CHAR.items()}


def _cls(ch):
    if ch.isalpha():
        return "L"
    if ch.isnumeric():
        return "N"
    if ch.isspace():
        return "S"
    return "P"


def pretokenize(text):
    """The GPT-2 pattern 's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+,
    preceded by SmolLM2's split of every digit into its own piece."""
    pieces, i, n = [], 0, len(text)
    while i < n:
        rest = text[i:]
        for c in ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d"):
            if rest.startswith(c):
                pieces.append(c)
                i += len(c)
                break
        else:
            j = i + 1 if text[i] == " " and i + 1 < n and _cls(text[i + 1]) != "S" else i
            k = _cls(text[j])
            if k == "N":  # digits one by one
                pieces.append(text[i:j + 1])
                i = j + 1
            elif k in "LP":
                e = j + 1
                while e < n and _cls(text[e]) == k:
                    e += 1
                pieces.append(text[i:e])
                i = e
            else:  # whitespace run: leave the last space to the next word unless at the end
                e = i
                while e < n and _cls(text[e]) == "S":
                    e += 1
                if e < n and e - i > 1:
                    e -= 1
                pieces.append(text[i:e])
                i = e
    return pieces


def _symbols(piece):
    return [BYTE_CHAR[b] for b in piece.encode("utf-8")]


class Tokenizer:
    def __init__(self, merges):
        self.merges = merges  # list of (left, right) in rank order
        self.rank = {m: i for i, m in enumerate(merges)}
        self.tokens = HEAD_SPECIALS + [BYTE_CHAR[b] for b in range(256)] + [a + b for a, b in merges] + TAIL_SPECIALS
        self.id = {}
        for i, t in enumerate(self.tokens):
            self.id.setdefault(t, i)

    def special(self, name):
        return self.id[name]

    def _bpe(self, piece):
        sym = _symbols(piece)
        while len(sym) > 1:
            best = min(range(len(sym) - 1), key=lambda i: self.rank.get((sym[i], sym[i + 1]), 1 << 30))
            if (sym[best], sym[best + 1]) not in self.rank:
                break
            sym = sym[:best] + [sym[best] + sym[best + 1]] + sym[best + 2:]
        return [self.id[s] for s in sym]

    def encode(self, text):
        """Special tokens are matched verbatim first (like HF added tokens / parse_special)."""
        ids, i = [], 0
        while i < len(text):
            hit = next((s for s in SPECIALS if text.startswith(s, i)), None)
            if hit:
                ids.append(self.id[hit])
                i += len(hit)
                continue
            j = i
            while j < len(text) and not any(text.startswith(s, j) for s in SPECIALS):
                j += 1
            for p in pretokenize(text[i:j]):
                ids += self._bpe(p)
            i = j
        return ids

    def decode(self, ids):
        out = bytearray()
        for t in ids:
            tok = self.tokens[t]
            if tok in SPECIALS:
                continue
            out += bytes(CHAR_BYTE[c] for c in tok)
        return out.decode("utf-8", errors="replace")

    def save(self, path):
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"merges": [list(m) for m in self.merges]}, f, ensure_ascii=False, indent=0)

    @staticmethod
    def load(path):
        with open(path, encoding="utf-8") as f:
            return Tokenizer([tuple(m) for m in json.load(f)["merges"]])


def train(texts, vocab_size):
    """Greedy BPE: repeatedly merge the most frequent adjacent pair (ties: smallest pair) until
    the vocabulary is full or no pair occurs twice."""
    words = Counter()
    for t in texts:
        for s in SPECIALS:  # special tokens are never built from ordinary text
            t = t.replace(s, "\0")
        for chunk in t.split("\0"):
            for p in pretokenize(chunk):
                words[tuple(_symbols(p))] += 1
    words = {w: c for w, c in words.items()}
    merges = []
    budget = vocab_size - len(SPECIALS) - 256
    while len(merges) < budget:
        pairs = Counter()
        for w, c in words.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] += c
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        if pairs[best] < 2:
            break
        merges.append(best)
        merged = {}
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(w[i] + w[i + 1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            merged[tuple(out)] = merged.get(tuple(out), 0) + c
        words = merged
    return Tokenizer(merges)
