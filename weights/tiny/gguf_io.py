"""A small GGUF v3 writer and reader (the `gguf` pip package is not needed).

Format (MODELS.md §2.2): magic "GGUF", u32 version 3, u64 n_tensors, u64 n_kv, then the KVs
(gguf string key, u32 value type, value), then the tensor infos (name, u32 n_dims, u64 ne[...]
innermost first, u32 ggml type, u64 offset into the data section), zero padding to the
alignment (32), then the tensor bytes, each padded to the alignment. All little-endian.
"""
import struct

import numpy as np

ALIGN = 32

# GGUF value types
T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STR, T_ARR, T_U64, T_I64, T_F64 = range(13)
_SCALAR = {T_U8: "<B", T_I8: "<b", T_U16: "<H", T_I16: "<h", T_U32: "<I", T_I32: "<i",
           T_F32: "<f", T_BOOL: "<?", T_U64: "<Q", T_I64: "<q", T_F64: "<d"}

# ggml tensor types used here
GGML_F32, GGML_F16 = 0, 1


class Writer:
    """Collects typed KVs and tensors, then writes one file. Values must be given with their
    exact GGUF type because llama.cpp reads them with type-checked accessors."""

    def __init__(self):
        self.kvs = []      # (key, type, value, elem_type)
        self.tensors = []  # (name, ne list, ggml type, bytes)

    def add(self, key, vtype, value, elem_type=None):
        self.kvs.append((key, vtype, value, elem_type))

    def u32(self, key, v): self.add(key, T_U32, int(v))
    def f32(self, key, v): self.add(key, T_F32, float(v))
    def bool(self, key, v): self.add(key, T_BOOL, bool(v))
    def str(self, key, v): self.add(key, T_STR, v)
    def arr(self, key, elem_type, values): self.add(key, T_ARR, list(values), elem_type)

    def tensor(self, name, array, ggml_type=GGML_F32):
        """array: numpy, HF (outermost-first) shape; stored ne = reversed shape."""
        a = np.ascontiguousarray(array, dtype=np.float16 if ggml_type == GGML_F16 else np.float32)
        assert len(name) <= 63 and 1 <= a.ndim <= 4
        self.tensors.append((name, list(reversed(a.shape)), ggml_type, a.tobytes()))

    def write(self, path):
        out = bytearray()
        out += b"GGUF" + struct.pack("<IQQ", 3, len(self.tensors), len(self.kvs))
        for key, vtype, value, elem_type in self.kvs:
            out += _str(key) + struct.pack("<I", vtype)
            if vtype == T_ARR:
                out += struct.pack("<IQ", elem_type, len(value))
                for v in value:
                    out += _value(elem_type, v)
            else:
                out += _value(vtype, value)
        offset = 0
        for name, ne, gtype, data in self.tensors:
            out += _str(name) + struct.pack("<I", len(ne))
            out += b"".join(struct.pack("<Q", n) for n in ne)
            out += struct.pack("<IQ", gtype, offset)
            offset += _pad(len(data))
        out += b"\0" * (_pad(len(out)) - len(out))
        for _, _, _, data in self.tensors:
            out += data + b"\0" * (_pad(len(data)) - len(data))
        with open(path, "wb") as f:
            f.write(out)


def _pad(n):
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _str(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def _value(vtype, v):
    if vtype == T_STR:
        return _str(v)
    return struct.pack(_SCALAR[vtype], v)


def read(path):
    """Returns (kvs: dict key -> value, tensors: dict name -> (ne, type, numpy array or None))."""
    buf = open(path, "rb").read()
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, buf, pos)
        pos += struct.calcsize(fmt)
        return v[0]

    def rstr():
        nonlocal pos
        n = take("<Q")
        s = buf[pos:pos + n].decode("utf-8")
        pos += n
        return s

    def rval(t):
        if t == T_STR:
            return rstr()
        if t == T_ARR:
            et, n = take("<I"), take("<Q")
            return [rval(et) for _ in range(n)]
        return take(_SCALAR[t])

    assert buf[:4] == b"GGUF"
    pos = 4
    take("<I")
    n_t, n_kv = take("<Q"), take("<Q")
    kvs = {}
    for _ in range(n_kv):
        k = rstr()
        kvs[k] = rval(take("<I"))
    infos = []
    for _ in range(n_t):
        name = rstr()
        nd = take("<I")
        ne = [take("<Q") for _ in range(nd)]
        infos.append((name, ne, take("<I"), take("<Q")))
    align = kvs.get("general.alignment", ALIGN)
    base = (pos + align - 1) // align * align
    tensors = {}
    for name, ne, t, off in infos:
        arr = None
        if t in (GGML_F32, GGML_F16):
            dt = np.float32 if t == GGML_F32 else np.float16
            n = int(np.prod(ne))
            arr = np.frombuffer(buf, dtype=dt, count=n, offset=base + off).reshape(list(reversed(ne)))
        tensors[name] = (ne, t, arr)
    return kvs, tensors


if __name__ == "__main__":
    import sys
    kvs, tensors = read(sys.argv[1])
    for k, v in kvs.items():
        if isinstance(v, list) and len(v) > 8:
            v = f"[{len(v)} items: {v[:8]} ...]"
        print(f"{k} = {v!r}"[:200])
    for name, (ne, t, _) in tensors.items():
        print(f"{name} ne={ne} type={t}")
