"""Seeded mutations of a `.tflite`: structural (through the flatbuffer schema) and byte-level.

Each mutation is named (`kind:detail`) so a failing fuzz case can be reproduced from its seed.
"""

from __future__ import annotations

import random

from tests.hardening.tflite_build import pack, parse

HUGE = (0, -1, -7, 1 << 20, (1 << 31) - 1)


def _any_index(rng: random.Random, n: int) -> int:
    return rng.choice([-1, -2, n, n + 3, rng.randrange(max(n, 1)), (1 << 31) - 1])


def structural(data: bytes, rng: random.Random) -> tuple[str, bytes | None]:
    """One edit of the parsed model; (name, bytes) or (name, None) when the edit cannot be packed."""
    m = parse(data)
    g = m.subgraphs[0]
    kind = rng.choice(
        ["op_input", "op_output", "shape", "type", "buffer_index", "buffer_data", "scale", "zero_point",
         "opcode_index", "builtin_code", "graph_io", "options"]
    )  # fmt: skip
    if kind in ("op_input", "op_output"):
        op = rng.choice(g.operators)
        ios = op.inputs if kind == "op_input" else op.outputs
        k = rng.randrange(len(ios))
        ios[k] = _any_index(rng, len(g.tensors))
        detail = f"{k}={ios[k]}"
    elif kind == "shape":
        t = rng.choice(g.tensors)
        if t.shape is None or not len(t.shape):
            t.shape = [rng.choice(HUGE)]
        else:
            t.shape[rng.randrange(len(t.shape))] = rng.choice(HUGE)
        detail = f"{t.name}={list(t.shape)}"
    elif kind == "type":
        t = rng.choice(g.tensors)
        t.type = rng.randrange(18)
        detail = f"{t.name}={t.type}"
    elif kind == "buffer_index":
        t = rng.choice(g.tensors)
        t.buffer = _any_index(rng, len(m.buffers))
        if t.buffer < 0:
            t.buffer = len(m.buffers) + 1  # uint32 in the schema
        detail = f"{t.name}={t.buffer}"
    elif kind == "buffer_data":
        full = [b for b in m.buffers if b.data is not None and len(b.data)]
        b = rng.choice(full)
        cut = rng.randrange(len(b.data))
        b.data = b.data[:cut]
        detail = f"cut={cut}"
    elif kind in ("scale", "zero_point"):
        qs = [t for t in g.tensors if t.quantization is not None and t.quantization.scale is not None]
        if not qs:
            return kind, None
        t = rng.choice(qs)
        if kind == "scale":
            t.quantization.scale = [rng.choice([0.0, -1.0, float("nan"), float("inf"), 1e30])]
        else:
            t.quantization.zeroPoint = [rng.choice([1 << 40, -(1 << 40), 300, -300])]
        detail = t.name
    elif kind == "opcode_index":
        op = rng.choice(g.operators)
        op.opcodeIndex = rng.choice([len(m.operatorCodes), len(m.operatorCodes) + 5, (1 << 31) - 1])
        detail = str(op.opcodeIndex)
    elif kind == "builtin_code":
        oc = rng.choice(m.operatorCodes)
        oc.builtinCode = oc.deprecatedBuiltinCode = rng.randrange(127)
        detail = str(oc.builtinCode)
    elif kind == "graph_io":
        which = rng.choice(["inputs", "outputs"])
        ios = list(getattr(g, which))
        ios = rng.choice([[], ios + ios, [_any_index(rng, len(g.tensors))]])
        setattr(g, which, ios)
        detail = f"{which}={ios}"
    else:  # options of another operator kind
        op = rng.choice(g.operators)
        other = rng.choice([o for o in g.operators if o is not op] or g.operators)
        op.builtinOptionsType, op.builtinOptions = other.builtinOptionsType, other.builtinOptions
        detail = str(op.builtinOptionsType)
    try:
        return f"{kind}:{detail}", pack(m)
    except Exception:
        return f"{kind}:{detail}", None


def byte_level(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    buf = bytearray(data)
    kind = rng.choice(["flip", "word", "truncate", "insert", "delete"])
    at = rng.randrange(len(buf))
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
    elif kind == "word":
        at -= at % 4
        buf[at : at + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", rng.randbytes(4)])
    elif kind == "truncate":
        del buf[at:]
    elif kind == "insert":
        buf[at:at] = rng.randbytes(rng.randint(1, 16))
    else:
        del buf[at : at + rng.randint(1, 16)]
    return f"{kind}@{at}", bytes(buf)


def mutations(data: bytes, n: int, seed: int) -> list[tuple[str, bytes]]:
    """n mutated models (about half structural), reproducible from `seed`."""
    rng = random.Random(seed)
    out: list[tuple[str, bytes]] = []
    while len(out) < n:
        if len(out) % 2 == 0:
            name, mutated = structural(data, rng)
            if mutated is None:
                continue
            out.append((f"s{len(out)}:{name}", mutated))
        else:
            name, mutated = byte_level(data, rng)
            out.append((f"b{len(out)}:{name}", mutated))
    return out
