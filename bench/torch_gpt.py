#!/usr/bin/python3
"""PyTorch reference GPT trainer: the model of docs/ARCHITECTURE.md ("The
model"), the baseline that `cllm` training throughput is compared with, and the model that
tools/make_parity_fixture.py exports for the parity test.

GPT-2: token + position embeddings, pre-LayerNorm blocks (causal multi-head
attention, 4x MLP with GELU tanh), final LayerNorm, LM head tied to wte,
biases everywhere, no dropout, LayerNorm eps 1e-5, GPT-2 init. Parameter
names and layouts are Hugging Face GPT-2's (Conv1D weights are [in, out]).
AdamW as torch.optim.AdamW, betas 0.9/0.999, eps 1e-8, weight decay only on
tensors with 2 or more dimensions.

Usage (Debian 12: apt install python3-torch libopenblas0-openmp):

  OMP_NUM_THREADS=1 LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp \\
      /usr/bin/python3 bench/torch_gpt.py --config small --threads 1 --steps 30

Debian's torch does its matrix products in whatever libblas.so.3 resolves
to: the reference BLAS is 17-28x slower, and OpenBLAS's pthread build
oversubscribes the cores at 2+ threads. So the script re-executes itself
with LD_LIBRARY_PATH pointing at OpenBLAS's OpenMP build (--blas-dir) when
that directory exists and is not on the path yet, and sets OMP_NUM_THREADS
to --threads before importing torch. It prints the BLAS library actually
loaded.

Prints the exact command, the configuration, one line per step, then the
median tokens/s over the steps after --warmup, the peak RSS and the final
loss (or one JSON object with --json).
"""

import argparse
import json
import math
import os
import resource
import shlex
import statistics
import sys
import time

CONFIGS = {
    # name: layers, dim, heads, context, batch (vocab 256 unless --vocab; gpt2: run it with --vocab 50257)
    "tiny": dict(layers=2, dim=128, heads=4, context=64, batch=16),
    "small": dict(layers=4, dim=256, heads=8, context=128, batch=8),
    "medium": dict(layers=6, dim=384, heads=6, context=256, batch=4),
    "gpt2": dict(layers=12, dim=768, heads=12, context=1024, batch=8),
}
DEFAULT_BLAS_DIR = "/usr/lib/x86_64-linux-gnu/openblas-openmp"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", choices=sorted(CONFIGS), default="small")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads and OMP_NUM_THREADS")
    p.add_argument("--steps", type=int, default=20, help="optimizer steps, warm-up included")
    p.add_argument("--warmup", type=int, default=3, help="steps left out of the median")
    p.add_argument("--batch", type=int, help="sequences per step (default: the config's)")
    p.add_argument("--seq", type=int, help="tokens per sequence (default: the config's context)")
    p.add_argument("--vocab", type=int, default=256)
    p.add_argument("--data", help="train on the bytes of this file (default: random tokens)")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--autocast", choices=["none", "bf16"], default="none",
                   help="bf16: torch.autocast('cpu', torch.bfloat16) around forward and loss (fp32 master weights)")
    p.add_argument("--json", action="store_true", help="print one JSON object at the end instead of text")
    p.add_argument("--blas-dir", default=DEFAULT_BLAS_DIR,
                   help="directory put first on LD_LIBRARY_PATH (re-executes); empty to keep the environment")
    args = p.parse_args(argv)
    cfg = CONFIGS[args.config]
    args.batch = args.batch if args.batch is not None else cfg["batch"]
    args.seq = args.seq if args.seq is not None else cfg["context"]
    if args.threads < 1:
        p.error(f"--threads {args.threads}: expected 1 or more")
    if args.steps <= args.warmup:
        p.error(f"--steps {args.steps} must be larger than --warmup {args.warmup}")
    if args.batch < 1:
        p.error(f"--batch {args.batch}: expected 1 or more")
    if not 1 <= args.seq <= cfg["context"]:
        p.error(f"--seq {args.seq}: expected 1..{cfg['context']} (the context of config {args.config})")
    if args.data is not None and args.vocab < 256:
        p.error(f"--data reads byte tokens 0..255, which needs --vocab 256 or more, not {args.vocab}")
    return args


def prepare_environment(args):
    """Re-executes with the OpenMP OpenBLAS first on LD_LIBRARY_PATH, and sets
    OMP_NUM_THREADS, both of which must happen before torch is loaded."""
    paths = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d]
    if args.blas_dir and os.path.isdir(args.blas_dir) and args.blas_dir not in paths:
        env = dict(os.environ, LD_LIBRARY_PATH=":".join([args.blas_dir] + paths))
        env["OMP_NUM_THREADS"] = str(args.threads)
        os.execve(sys.executable, [sys.executable] + sys.argv, env)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)


if __name__ == "__main__":
    ARGS = parse_args(sys.argv[1:])
    prepare_environment(ARGS)

import torch  # noqa: E402  (after OMP_NUM_THREADS is set)
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


class Conv1D(nn.Module):
    """Hugging Face GPT-2's linear layer: weight [in, out], out = x @ W + b."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x):
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(*x.shape[:-1], -1)


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.c_attn = Conv1D(dim, 3 * dim)  # columns [q | k | v], each split into heads in order
        self.c_proj = Conv1D(dim, dim)

    def forward(self, x):
        B, T, C = x.shape
        hd = C // self.heads
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.heads, hd).transpose(1, 2) for t in (q, k, v))  # (B, H, T, hd)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        att = F.softmax(att.masked_fill(~causal, float("-inf")), dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.c_fc = Conv1D(dim, 4 * dim)
        self.c_proj = Conv1D(4 * dim, dim)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn = Attention(dim, heads)
        self.ln_2 = nn.LayerNorm(dim, eps=1e-5)
        self.mlp = MLP(dim)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """state_dict() keys are the Hugging Face GPT-2 names of docs/ARCHITECTURE.md."""

    def __init__(self, vocab, layers, dim, heads, context):
        super().__init__()
        if dim % heads != 0:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.layers = layers
        self.wte = nn.Embedding(vocab, dim)
        self.wpe = nn.Embedding(context, dim)
        self.h = nn.ModuleList(Block(dim, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(dim, eps=1e-5)

    def init_weights(self, seed):
        """GPT-2 init, deterministic in seed: weights N(0, 0.02), c_proj
        weights N(0, 0.02/sqrt(2*layers)), biases 0, LayerNorm weight 1."""
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name == "ln_f.weight":
                    p.fill_(1.0)
                elif p.dim() == 1:
                    p.zero_()
                else:
                    std = 0.02 / math.sqrt(2 * self.layers) if name.endswith("c_proj.weight") else 0.02
                    p.normal_(0.0, std, generator=gen)

    def forward(self, tokens, targets=None):
        """tokens, targets (B, T) int64 -> logits (B, T, V), mean cross-entropy (or None)."""
        T = tokens.shape[1]
        pos = torch.arange(T, device=tokens.device)
        x = self.wte(tokens) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        logits = F.linear(self.ln_f(x), self.wte.weight)  # tied head
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))
        return logits, loss


def make_optimizer(model, lr, weight_decay):
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8)


class Batches:
    """(B, T) token/target batches: random windows of a byte file, or
    uniformly random tokens, from a seeded generator."""

    def __init__(self, args):
        self.batch, self.seq, self.vocab = args.batch, args.seq, args.vocab
        self.gen = torch.Generator().manual_seed(args.seed + 1)
        self.data = None
        if args.data is not None:
            with open(args.data, "rb") as f:
                raw = f.read()
            if len(raw) < args.seq + 1:
                raise SystemExit(f"torch_gpt.py: error: --data {args.data} has {len(raw)} bytes, "
                                 f"expected at least --seq + 1 = {args.seq + 1}")
            self.data = torch.frombuffer(bytearray(raw), dtype=torch.uint8).long()

    def next(self):
        if self.data is None:
            x = torch.randint(0, self.vocab, (self.batch, self.seq + 1), generator=self.gen)
        else:
            starts = torch.randint(0, len(self.data) - self.seq, (self.batch,), generator=self.gen)
            x = torch.stack([self.data[s:s + self.seq + 1] for s in starts.tolist()])
        return x[:, :-1], x[:, 1:]


def loaded_blas():
    """Paths of the BLAS libraries mapped into this process."""
    with open("/proc/self/maps") as f:
        paths = {line.split()[-1] for line in f if "blas" in line.split()[-1]}
    return sorted(p for p in paths if p.startswith("/"))


def command_line():
    env = " ".join(f"{k}={shlex.quote(os.environ[k])}" for k in ("OMP_NUM_THREADS", "LD_LIBRARY_PATH")
                   if k in os.environ)
    return f"{env} {shlex.quote(sys.executable)} {' '.join(shlex.quote(a) for a in sys.argv)}".strip()


def main(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cfg = CONFIGS[args.config]
    model = GPT(args.vocab, cfg["layers"], cfg["dim"], cfg["heads"], cfg["context"])
    model.init_weights(args.seed)
    opt = make_optimizer(model, args.lr, args.weight_decay)
    batches = Batches(args)
    n_params = sum(p.numel() for p in model.parameters())
    tokens_per_step = args.batch * args.seq
    if not args.json:
        print(f"command: {command_line()}")
        print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, blas {', '.join(loaded_blas())}")
        print(f"config {args.config}: vocab {args.vocab}, layers {cfg['layers']}, dim {cfg['dim']}, "
              f"heads {cfg['heads']}, context {cfg['context']}, batch {args.batch}, seq {args.seq}, "
              f"params {n_params}, data {args.data or 'random tokens'}, autocast {args.autocast}")
    step_seconds, loss = [], float("nan")
    for step in range(args.steps):
        tokens, targets = batches.next()
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.autocast == "bf16"):
            _, loss_t = model(tokens, targets)
        opt.zero_grad(set_to_none=True)
        loss_t.backward()
        opt.step()
        dt = time.perf_counter() - t0
        loss = loss_t.item()
        step_seconds.append(dt)
        if not args.json:
            print(f"step {step + 1:4d}  loss {loss:.4f}  {dt * 1e3:8.1f} ms  {tokens_per_step / dt:9.0f} tok/s",
                  flush=True)
    tokens_per_s = tokens_per_step / statistics.median(step_seconds[args.warmup:])
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    if args.json:
        print(json.dumps({"command": command_line(), "torch": torch.__version__, "config": args.config,
                          "threads": args.threads, "autocast": args.autocast, "batch": args.batch, "seq": args.seq, "params": n_params,
                          "tokens_per_s": tokens_per_s, "peak_rss_mb": peak_rss_mb, "final_loss": loss,
                          "blas": loaded_blas()}))
    else:
        print(f"tokens/s {tokens_per_s:.0f} (median of steps {args.warmup + 1}..{args.steps})  "
              f"peak RSS {peak_rss_mb:.0f} MB  final loss {loss:.4f}")


if __name__ == "__main__":
    main(ARGS)
