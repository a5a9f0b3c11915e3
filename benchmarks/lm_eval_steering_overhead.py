"""How much does an intervention's steering hook cost inside lm-eval log-likelihood scoring?

Prints ratios measured in this one run: the wall time of
``HFLM.loglikelihood`` over the same requests with a steering context
installed, over the time without one (goal: <= 1.05x). Asserts nothing.

    python benchmarks/lm_eval_steering_overhead.py                # ~1-2 min on 2 cores
    python benchmarks/lm_eval_steering_overhead.py --repeats 15 --threads 2

Model: a Llama-style model from a config in memory (random weights) with the
example workspace's tokenizer; requests are random word contexts with
one-word continuations, scored by lm-eval's own batching (right-padded with
token 0, no attention mask), so ``LAST_TOKEN`` steering finds each row's last
real token from the padding, as in a real run.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TOKENIZER = ROOT / "workspace.example" / "transformers" / "tiny-llama-3-8b"


def build(args: argparse.Namespace) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    tokenizer = AutoTokenizer.from_pretrained(str(TOKENIZER))
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=args.hidden, intermediate_size=args.hidden * 11 // 4,
                         num_hidden_layers=args.layers, num_attention_heads=args.hidden // 32,
                         num_key_value_heads=args.hidden // 64, max_position_embeddings=1024,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval(), tokenizer


def requests(args: argparse.Namespace) -> list[Any]:
    from lm_eval.api.instance import Instance

    rng = random.Random(0)
    words = ["the", "capital", "of", "river", "town", "founded", "year", "answer", "is", "north", "coin", "blue"]
    out = []
    for i in range(args.requests):
        context = " ".join(rng.choice(words) for _ in range(rng.randint(args.words // 2, args.words)))
        out.append(Instance("loglikelihood", {}, (context, " " + rng.choice(words)), i))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--words", type=int, default=60, help="longest context, in words")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import lm_eval
    import transformers
    from lm_eval.models.huggingface import HFLM

    from models.steering import steer

    model, tokenizer = build(args)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=args.batch)
    reqs = requests(args)
    g = torch.Generator().manual_seed(1)
    direction = torch.randn(args.hidden, generator=g)
    middle = [args.layers // 2]
    every = list(range(args.layers))

    def run(context: Callable[[], Any] | None) -> float:
        start = time.perf_counter()
        if context is None:
            lm.loglikelihood(reqs, disable_tqdm=True)
        else:
            with context():
                lm.loglikelihood(reqs, disable_tqdm=True)
        return time.perf_counter() - start

    methods: dict[str, Callable[[], Any]] = {
        "LAST_TOKEN, 1 layer": lambda: steer(model, middle, direction, scale=2.0, positions="last", pad_token_id=0),
        "ALL_TOKENS, 1 layer": lambda: steer(model, middle, direction, scale=2.0, positions="all", pad_token_id=0),
        f"LAST_TOKEN, all {args.layers} layers": lambda: steer(model, every, direction, scale=2.0, positions="last",
                                                               pad_token_id=0),
    }
    print(f"python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}, "
          f"lm_eval {lm_eval.__version__}; threads {args.threads}; load {os.getloadavg()[0]:.2f}")
    print(f"model: Llama {args.layers} layers, hidden {args.hidden}, vocab {len(tokenizer)}; {args.requests} "
          f"loglikelihood requests, contexts up to {args.words} words, HFLM batch {args.batch}")
    run(None)
    for make in methods.values():
        run(make)  # warm-up
    ratios: dict[str, list[float]] = {name: [] for name in methods}
    base_times: list[float] = []
    rng = random.Random(2)
    for _ in range(args.repeats):
        order = list(methods)
        rng.shuffle(order)
        for name in order:  # each method right after a baseline run: load hits both sides of a pair
            base = run(None)
            base_times.append(base)
            ratios[name].append(run(methods[name]) / base)
    print(f"no hook: median {statistics.median(base_times) * 1000:.0f} ms per pass over the requests")
    for name, values in ratios.items():
        q = statistics.quantiles(values, n=4)
        print(f"{name:28s} ratio {statistics.median(values):.3f}  (IQR {q[0]:.3f}-{q[2]:.3f}, n={len(values)})")
    print(f"load at the end {os.getloadavg()[0]:.2f}; goal <= 1.05")


if __name__ == "__main__":
    main()
