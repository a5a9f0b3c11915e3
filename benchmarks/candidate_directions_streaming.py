#!/usr/bin/env python
"""Candidate directions: latentrun's streaming pass vs the seed's approach, measured in one run.

* **seed**: batch size 1, ``output_hidden_states=True``, the last-token state of
  every layer kept in memory for every prompt (per-layer lists), stacked and
  averaged per class at the end (float64), as the seed's save_hidden_states +
  save_candidate_directions do;
* **streaming**: :func:`plugins.common.extraction.reduce_batches` (padded
  batches, longest first, reduction inside the capture hook) feeding an
  :class:`models.accumulators.Accumulator`; nothing per prompt is kept.

Each (method, N) runs in a fresh process on the same randomly initialised
Llama-style model and the same random prompts; peak memory is the growth of
the process' peak RSS over its RSS after loading and one warm-up forward.
Printed: throughput ratio (goal >= 5x) and peak memory at N and 4N (goal:
flat in N for streaming). No assertions::

    python benchmarks/candidate_directions_streaming.py [--n 64] [--batch-size 32] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

HIDDEN, LAYERS, HEADS, VOCAB = 256, 8, 4, 1024


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        pass


def _model_and_prompts(n: int, seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from plugins.common.extraction import Prompt

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=4 * HIDDEN,
                         num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=HEADS,
                         max_position_embeddings=256, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(config).eval()
    g = torch.Generator().manual_seed(seed + 1)
    prompts = []
    for i in range(n):
        length = int(torch.randint(24, 96, (1,), generator=g))
        ids = [1] + torch.randint(3, VOCAB, (length - 1,), generator=g).tolist()
        prompts.append(Prompt(i, "", "reasoning" if i % 2 else "memorizing", ids))
    return model, prompts


def seed_approach(model, prompts):
    """Batch size 1; keep every layer's last-token state of every prompt; average at the end."""
    import torch

    kept: dict[int, list] = {}
    labels = []
    with torch.no_grad():
        for prompt in prompts:
            out = model(torch.tensor([prompt.ids]), output_hidden_states=True)
            for layer, states in enumerate(out.hidden_states):
                # .clone(): on a GPU the seed's .cpu() copies just this row; on a CPU tensor
                # .cpu() is a no-op and the view would keep the whole [seq, hidden] alive.
                kept.setdefault(layer, []).append(states[0, -1].clone())
            labels.append(prompt.label)
    is_r = torch.tensor([label == "reasoning" for label in labels])
    directions = {}
    for layer, rows in kept.items():
        x = torch.stack(rows).double()
        directions[layer] = x[is_r].mean(0) - x[~is_r].mean(0)
    return directions


def streaming(model, prompts, batch_size):
    from models.accumulators import Accumulator
    from plugins.common.extraction import reduce_batches

    class Tok:
        pad_token_id = 0

    ordered = sorted(prompts, key=lambda p: (-len(p.ids), p.index))
    acc = Accumulator()
    for batch, values in reduce_batches(model, Tok(), ordered, "FIRST_ANSWER_TOKEN", batch_size):
        acc.update(values, [p.label for p in batch])
    return {k: acc.class_means(k)["reasoning"] - acc.class_means(k)["memorizing"] for k in acc.layers}


def worker(method: str, n: int, batch_size: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    model, prompts = _model_and_prompts(n)
    with torch.no_grad():  # warm-up: allocator and kernels, not measured
        model(torch.tensor([prompts[0].ids]))
    base = _rss_kb("VmRSS")
    _reset_peak()
    start = time.perf_counter()
    result = seed_approach(model, prompts) if method == "seed" else streaming(model, prompts, batch_size)
    seconds = time.perf_counter() - start
    peak = _rss_kb("VmHWM")
    if method == "seed":  # transformers' hidden_states[0] = embed, [i + 1] = our layer i (last one: final norm)
        order = list(range(LAYERS))
    else:
        order = ["embed", *range(LAYERS - 1)]
    norms = [float(result[k].norm()) for k in order]
    return {"method": method, "n": n, "seconds": seconds, "prompts_per_s": n / seconds,
            "peak_growth_mb": max(peak - base, 0) / 1024, "direction_norms": norms}


def run(method: str, n: int, batch_size: int, threads: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", method, "--n", str(n), "--batch-size",
                          str(batch_size), "--threads", str(threads)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64, help="N prompts (also run at 4N)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--worker", choices=("seed", "streaming"))
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.n, args.batch_size, args.threads)))
        return
    print(f"model: random Llama, hidden {HIDDEN}, {LAYERS} layers; prompts 24-95 tokens; "
          f"batch {args.batch_size} (streaming) vs 1 (seed); {args.threads} threads")
    results = {}
    for n in (args.n, 4 * args.n):
        for method in ("seed", "streaming"):
            r = run(method, n, args.batch_size, args.threads)
            results[(method, n)] = r
            print(f"  {method:9s} N={n:5d}: {r['seconds']:7.2f} s  {r['prompts_per_s']:7.1f} prompts/s  "
                  f"peak RSS growth {r['peak_growth_mb']:7.1f} MB")
    n, n4 = args.n, 4 * args.n
    seed_rate = results[("seed", n4)]["prompts_per_s"]
    stream_rate = results[("streaming", n4)]["prompts_per_s"]
    print(f"throughput ratio streaming/seed at N={n4}: {stream_rate / seed_rate:.1f}x (goal >= 5x)")
    for method in ("seed", "streaming"):
        small, large = results[(method, n)]["peak_growth_mb"], results[(method, n4)]["peak_growth_mb"]
        print(f"peak memory growth {method}: N={n}: {small:.1f} MB, 4N={n4}: {large:.1f} MB "
              f"(4N/N = {large / max(small, 1e-9):.2f}; {1024 * (large - small) / (n4 - n):.1f} KB per extra prompt; "
              "goal for streaming: flat)")
    a = results[("seed", n4)]["direction_norms"]
    b = results[("streaming", n4)]["direction_norms"]
    print(f"same directions (embed .. layer {LAYERS - 2}): max |‖d_seed‖ - ‖d_streaming‖| = "
          f"{max(abs(x - y) for x, y in zip(a, b)):.2e}")


if __name__ == "__main__":
    main()
