#!/usr/bin/python3
"""Writes tests/model/fixtures/parity.safetensors, the PyTorch side of the
model parity test (tests/model/test_parity.cpp).

The model is bench/torch_gpt.py's GPT (not a copy). A tiny config (vocab 64,
2 layers, dim 24, 4 heads of 6, context 16) with seeded weights: GPT-2 init
plus N(0, 0.2) noise on every tensor, so biases and LayerNorm parameters carry
non-trivial values and attention is far from uniform. The forward/backward
runs in float64 on those float32 weights, so the stored loss, logits and
gradients are the exact answer rounded once to float32.

The file holds (all F32 except the I32 token ids):
  every parameter under its Hugging Face GPT-2 name (docs/ARCHITECTURE.md "File formats"),
  input_ids [B,T] and targets [B,T] (I32), loss [] (mean cross-entropy),
  logits [B,T,V], and grad.<name> for every parameter (d loss / d param),
  with the config in __metadata__.

Usage (Debian 12: apt install python3-torch):
  /usr/bin/python3 tools/make_parity_fixture.py [--out PATH]
"""

import argparse
import json
import os
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
import torch  # noqa: E402
import torch_gpt  # noqa: E402

CONFIG = dict(vocab=64, layers=2, dim=24, heads=4, context=16)
BATCH, SEQ, SEED = 2, 16, 20240501
DEFAULT_OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "model", "fixtures",
                           "parity.safetensors")


def write_safetensors(path, tensors, metadata):
    """tensors: list of (name, torch tensor of float32 or int32), written in order,
    back to back; header padded with spaces to a multiple of 8 bytes."""
    dtypes = {torch.float32: ("F32", "<f4"), torch.int32: ("I32", "<i4")}
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name, t in tensors:
        dtype, little_endian = dtypes[t.dtype]
        blob = t.detach().contiguous().numpy().astype(little_endian).tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=DEFAULT_OUT)
    out = parser.parse_args().out

    model = torch_gpt.GPT(**CONFIG)
    model.init_weights(SEED)
    gen = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.2)
    weights = {name: p.detach().clone() for name, p in model.named_parameters()}  # float32

    tokens = torch.randint(0, CONFIG["vocab"], (BATCH, SEQ + 1), generator=gen)
    input_ids, targets = tokens[:, :-1], tokens[:, 1:]

    model.double()
    logits, loss = model(input_ids, targets)
    loss.backward()

    tensors = [(name, w) for name, w in weights.items()]
    tensors += [("input_ids", input_ids.to(torch.int32)), ("targets", targets.to(torch.int32)),
                ("loss", loss.detach().float()), ("logits", logits.detach().float())]
    tensors += [(f"grad.{name}", p.grad.float()) for name, p in model.named_parameters()]
    metadata = {k: str(v) for k, v in CONFIG.items()}
    metadata.update(batch=str(BATCH), seq=str(SEQ), seed=str(SEED), torch=torch.__version__,
                    generator="tools/make_parity_fixture.py")
    write_safetensors(out, tensors, metadata)
    print(f"wrote {out}: {os.path.getsize(out)} bytes, loss {loss.item():.6f}, {len(weights)} parameter tensors")


if __name__ == "__main__":
    main()
