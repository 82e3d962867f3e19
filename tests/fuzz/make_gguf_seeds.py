#!/usr/bin/python3
"""Writes the seeds of fuzz_gguf_header (tests/fuzz/corpus/gguf_header/): small GGUF files that
pass the structural check, so the fuzzer starts deep inside the walker.

  tests/fuzz/make_gguf_seeds.py [MODELS_DIR]

- tiny-model: the shape of gguf_builder.h's gb_valid() (vocabulary with a byte token, a BOS id,
  two F32 tensors, the data section).
- q4-tensors: quantized tensor infos (Q4_0, Q8_0, Q4_K) with their data, alignment 64.
- all-types: one key-value of every GGUF value type, arrays included.
- stories-vocab / chat-vocab: the metadata of the two real models in MODELS_DIR (default
  ../shared/models) with the tensor table dropped and the vocabulary cut to its first 300
  tokens (merges and scores cut to match), under 64 KiB each.
Run it again after changing the seeds' shape; the output is deterministic.
"""
import os
import struct
import sys

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "gguf_header")
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
SCALAR = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<?",
          U64: "<Q", I64: "<q", F64: "<d"}


def s(text):
    b = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(b)) + b


def kv(key, typ, val, arr_type=None):
    out = s(key) + struct.pack("<I", typ)
    if typ == ARR:
        out += struct.pack("<IQ", arr_type, len(val))
        out += b"".join(s(v) if arr_type == STR else struct.pack(SCALAR[arr_type], v) for v in val)
    elif typ == STR:
        out += s(val)
    else:
        out += struct.pack(SCALAR[typ], val)
    return out


def tensor(name, dims, typ, offset):
    return s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims) \
        + struct.pack("<IQ", typ, offset)


def gguf(kvs, tensors=(), data=b"", align=32):
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + b"".join(kvs)
    out += b"".join(tensors)
    if tensors:
        out += b"\0" * (-len(out) % align) + data
    return out


def read_kvs(path):
    """The key-values of a GGUF file as (key, type, value, arr_type) tuples."""
    with open(path, "rb") as f:
        buf = f.read()
    pos = 24
    n_kv = struct.unpack_from("<Q", buf, 16)[0]

    def rd(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, buf, pos)
        pos += struct.calcsize(fmt)
        return v[0]

    def rs():
        nonlocal pos
        n = rd("<Q")
        v = buf[pos:pos + n]
        pos += n
        return v

    out = []
    for _ in range(n_kv):
        key = rs().decode()
        typ = rd("<I")
        if typ == ARR:
            at, n = rd("<I"), rd("<Q")
            vals = [rs() if at == STR else rd(SCALAR[at]) for _ in range(n)]
            out.append((key, typ, vals, at))
        elif typ == STR:
            out.append((key, typ, rs(), None))
        else:
            out.append((key, typ, rd(SCALAR[typ]), None))
    return out


def vocab_seed(path, n_tokens=300):
    kvs = []
    for key, typ, val, at in read_kvs(path):
        if key in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
            val = val[:n_tokens]
        elif key == "tokenizer.ggml.merges":
            val = val[:50]
        elif key.endswith("_token_id") and val != 0xFFFFFFFF and val >= n_tokens:
            val = n_tokens - 1
        kvs.append(kv(key, typ, val, at))
    return gguf(kvs)


def main():
    models = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(OUT), "..", "..", "..", "..", "shared", "models")
    os.makedirs(OUT, exist_ok=True)
    seeds = {}
    seeds["tiny-model"] = gguf(
        [kv("general.architecture", STR, "llama"), kv("general.alignment", U32, 32),
         kv("llama.block_count", U32, 1),
         kv("tokenizer.ggml.tokens", ARR, ["<s>", "</s>", "<0x0A>", "hi"], STR),
         kv("tokenizer.ggml.token_type", ARR, [3, 3, 6, 1], I32),
         kv("tokenizer.ggml.bos_token_id", U32, 0)],
        [tensor("a.weight", [4, 4], 0, 0), tensor("c.weight", [8], 0, 64)], b"\0" * 96)
    # Q4_0: 32 elements -> 18 bytes; Q8_0: 32 -> 34; Q4_K: 256 -> 144
    seeds["q4-tensors"] = gguf(
        [kv("general.alignment", U32, 64), kv("general.architecture", STR, "gpt2"),
         kv("gpt2.block_count", U32, 2)],
        [tensor("q4", [64, 2], 2, 0), tensor("q8", [32], 8, 128), tensor("qk", [256], 12, 192)],
        b"\0" * 336, align=64)
    seeds["all-types"] = gguf(
        [kv("x.u8", U8, 1), kv("x.i8", I8, -1), kv("x.u16", U16, 2), kv("x.i16", I16, -2),
         kv("x.u32", U32, 3), kv("x.i32", I32, -3), kv("x.f32", F32, 0.5), kv("x.bool", BOOL, True),
         kv("x.str", STR, "text"), kv("x.u64", U64, 4), kv("x.i64", I64, -4), kv("x.f64", F64, 0.25),
         kv("x.arr.u8", ARR, [1, 2, 3], U8), kv("x.arr.str", ARR, ["a", "", "c"], STR),
         kv("x.arr.f64", ARR, [1.0], F64), kv("x.arr.empty", ARR, [], I64)])
    for name, fname in (("stories-vocab", "stories260K.gguf"),
                        ("chat-vocab", "tinystories-instruct-3m-soda-chat-Q4_0.gguf")):
        path = os.path.join(models, fname)
        if os.path.exists(path):
            seeds[name] = vocab_seed(path)
    for name, data in seeds.items():
        assert len(data) <= 65536, (name, len(data))
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
