"""Train the bundled demo model: a small gpt-oss (same blocks as gpt-oss-20b) on CPython's
documentation, on the CPU, deterministically given the seed.

    python tools/train_demo/train.py OUT_DIR [--steps 1000] [--qat-steps 200] [--seed 0]

writes a Hugging Face checkpoint directory (``config.json``, ``model.safetensors`` in
bfloat16 with dense experts, ``tokenizer.json``, ``generation_config.json``) plus
``heldout.txt`` (the held-out documents) and ``train_log.json``. Then:

    edgemoe quantize OUT_DIR -o demo.bin

The architecture is transformers' ``GptOssForCausalLM`` itself (attention sinks, sliding
window on alternate layers, YaRN RoPE, clamped SwiGLU, top-k routing with a load-balancing
loss), so what is trained is exactly what the converter and the C core must run.

As gpt-oss itself, the experts finish with quantization-aware training: for ``--qat-steps``
more steps the forward pass sees each expert matrix rounded to MXFP4 by the converter's own
rule (``edgemoe.quant``), the gradient passing straight through, and the saved experts are
those rounded values (exact in bfloat16), so converting them to MXFP4 loses nothing.
``--init DIR`` starts from a saved checkpoint instead (``--steps 0 --qat-steps N --init
DIR`` is the second phase alone: the first phase ends by rounding to bfloat16 and the second
starts with a fresh optimizer either way).
Determinism: same seed, same corpus (the script prints its SHA-256), same torch version and
thread count give the same weights.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus  # noqa: E402
from bpe import train_tokenizer  # noqa: E402

from edgemoe.tokenizer import encoding_from_spec, spec_from_hf_dir  # noqa: E402

N_RANKS = 4080       # BPE ranks; harmony's 9 special tokens follow, vocab padded to 4096
VOCAB = 4096
SEQ = 512            # training context (tokens)
BATCH = 8


def model_config(eos: list[int]) -> object:
    from transformers import GptOssConfig

    return GptOssConfig(
        vocab_size=VOCAB, hidden_size=256, intermediate_size=192, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=64,
        num_local_experts=16, num_experts_per_tok=4, sliding_window=128,
        layer_types=["sliding_attention", "full_attention"] * 2,
        rope_parameters={"rope_type": "yarn", "rope_theta": 150000.0, "factor": 32.0,
                         "beta_fast": 32.0, "beta_slow": 1.0, "truncate": False,
                         "original_max_position_embeddings": 4096},
        max_position_embeddings=131072, rms_norm_eps=1e-5, swiglu_limit=7.0,
        attention_bias=True, tie_word_embeddings=False, router_aux_loss_coef=0.02,
        output_router_logits=True, eos_token_id=eos, pad_token_id=eos[0],
    )


def encode_examples(docs: list[corpus.Document], enc: object, seed: int) -> list[list[int]]:
    """Each document as plain text and as a chat about it, each ending in <|endoftext|>."""
    rng = random.Random(seed)
    eot = enc.encode_single_token("<|endoftext|>")
    out = []
    for doc in docs:
        out.append(enc.encode(doc.text, disallowed_special=()) + [eot])
        out.append(enc.encode(corpus.chat_example(doc, rng), allowed_special="all") + [eot])
    return out


def batches(examples: list[list[int]], seed: int):
    """Endless [BATCH, SEQ + 1] batches: every epoch shuffles the examples, concatenates
    them and cuts the stream into windows."""
    import torch

    rng = random.Random(seed)
    epoch = 0
    while True:
        order = list(range(len(examples)))
        rng.shuffle(order)
        stream = [t for i in order for t in examples[i]]
        n = (len(stream) - 1) // SEQ
        windows = [stream[i * SEQ : i * SEQ + SEQ + 1] for i in range(n)]
        rng.shuffle(windows)
        for b in range(0, len(windows) - BATCH + 1, BATCH):
            yield epoch, torch.tensor(windows[b : b + BATCH])
        epoch += 1


def mxfp4_rounded(w: object) -> object:
    """An HF expert tensor [E, in, out] rounded to MXFP4 (blocks of 32 along ``in``, as the
    converter quantizes the transposed [out, in] matrix), as a new tensor."""
    import numpy as np
    import torch

    from edgemoe.quant import dequantize_mxfp4, quantize_mxfp4

    x = w.detach().float().transpose(1, 2).contiguous().numpy()   # [E, out, in]
    q = dequantize_mxfp4(quantize_mxfp4(x), x.shape)
    return torch.from_numpy(np.ascontiguousarray(q)).transpose(1, 2).to(w.dtype)


def fake_quant_module() -> object:
    import torch

    class Ste(torch.autograd.Function):
        @staticmethod
        def forward(ctx: object, w: object) -> object:
            return mxfp4_rounded(w)

        @staticmethod
        def backward(ctx: object, g: object) -> object:
            return g

    class FakeMxfp4(torch.nn.Module):
        def forward(self, w: object) -> object:
            return Ste.apply(w)

    return FakeMxfp4


def expert_tensors(model: object) -> list[tuple[object, str]]:
    return [(layer.mlp.experts, name) for layer in model.model.layers
            for name in ("gate_up_proj", "down_proj")]


def heldout_loss(model: object, ids: list[int]) -> float:
    """Mean next-token loss over the held-out stream, in SEQ windows."""
    import torch

    total, n = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(ids) - SEQ, SEQ):
            x = torch.tensor([ids[i : i + SEQ + 1]])
            out = model(input_ids=x[:, :-1], output_router_logits=False)
            logits = out.logits[0, :, :]
            total += float(torch.nn.functional.cross_entropy(logits, x[0, 1:], reduction="sum"))
            n += SEQ
    return total / max(n, 1)


def train_phase(model: object, examples: list[list[int]], steps: int, lr: float, seed: int,
                phase: str, log: list[dict[str, object]]) -> None:
    """``steps`` AdamW steps: 5 % warm-up to ``lr``, cosine down to ``lr / 10``."""
    import torch

    if steps <= 0:
        return
    named = list(model.named_parameters())
    decay = [p for n, p in named if p.dim() >= 2 and "router" not in n]
    no_decay = [p for n, p in named if not (p.dim() >= 2 and "router" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.95))
    warmup = max(steps // 20, 1)

    def lr_at(step: int) -> float:
        if step < warmup:
            return lr * (step + 1) / warmup
        progress = (step - warmup) / max(steps - warmup, 1)
        return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    start = time.time()
    model.train()
    for step, (epoch, batch) in zip(range(steps), batches(examples, seed), strict=False):
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        out = model(input_ids=batch[:, :-1], labels=batch[:, :-1])
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % 25 == 0 or step == steps - 1:
            elapsed = time.time() - start
            loss = round(float(out.loss.detach()), 4)
            log.append({"phase": phase, "step": step, "epoch": epoch, "loss": loss,
                        "lr": lr_at(step), "elapsed_s": round(elapsed, 1)})
            print(f"{phase} step {step} epoch {epoch} loss {loss:.4f} "
                  f"{(step + 1) * BATCH * SEQ / elapsed:.0f} tok/s {elapsed:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--qat-steps", type=int, default=200)
    ap.add_argument("--init", type=Path, default=None,
                    help="start from this checkpoint directory instead of random weights")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    import torch
    from transformers import GptOssForCausalLM

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    docs = corpus.documents()
    train_docs = [d for d in docs if not d.heldout]
    held_docs = [d for d in docs if d.heldout]
    digest = hashlib.sha256(corpus.corpus_text(docs).encode()).hexdigest()
    print(f"corpus: {len(train_docs)} documents for training, {len(held_docs)} held out; "
          f"sha256 {digest}", flush=True)

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    train_tokenizer([d.text for d in train_docs], N_RANKS, out / "tokenizer.json")
    enc = encoding_from_spec(spec_from_hf_dir(out))
    heldout = corpus.corpus_text(held_docs)
    (out / "heldout.txt").write_text(heldout, encoding="utf-8")
    held_ids = enc.encode(heldout, disallowed_special=())

    eos = [enc.encode_single_token(t) for t in ("<|return|>", "<|endoftext|>", "<|call|>")]
    if args.init:
        model = GptOssForCausalLM.from_pretrained(args.init, dtype=torch.float32,
                                                  attn_implementation="eager")
        model.config.output_router_logits = True
    else:
        model = GptOssForCausalLM._from_config(model_config(eos), attn_implementation="eager",
                                               dtype=torch.float32)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f} M parameters", flush=True)
    examples = encode_examples(train_docs, enc, args.seed)
    print(f"train tokens per epoch: {sum(map(len, examples))}", flush=True)
    log: list[dict[str, object]] = []
    train_phase(model, examples, args.steps, args.lr, args.seed, "train", log)
    model.to(torch.bfloat16).to(torch.float32)   # the phase boundary: as saved and reloaded
    if args.qat_steps:
        from torch.nn.utils import parametrize

        fake = fake_quant_module()
        for module, name in expert_tensors(model):
            parametrize.register_parametrization(module, name, fake())
        train_phase(model, examples, args.qat_steps, args.lr / 10, args.seed + 1, "qat", log)
        for module, name in expert_tensors(model):   # keep the rounded values
            parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    model.eval()
    held = heldout_loss(model, held_ids)
    print(f"held-out loss {held:.4f} (perplexity {math.exp(held):.2f})", flush=True)

    model.config.output_router_logits = False
    model.to(torch.bfloat16).save_pretrained(out)
    (out / "train_log.json").write_text(json.dumps({
        "seed": args.seed, "steps": args.steps, "qat_steps": args.qat_steps,
        "init": str(args.init) if args.init else None, "lr": args.lr, "threads": args.threads,
        "torch": torch.__version__, "corpus_sha256": digest, "parameters": n_params,
        "heldout_loss": held, "log": log}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
