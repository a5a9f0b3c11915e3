"""ICM local backend: prefix key/value reuse vs naive re-encoding, for the same search, as ratios.

    python benchmarks/icm_prefix_reuse.py                 # the example model and data; ~18 min on 2 busy cores,
                                                          # almost all of it the naive search
    python benchmarks/icm_prefix_reuse.py --K 8 --claims 16  # a quick look

Runs the ICM search of ``icm_label`` twice on the example arithmetic claims
(one batch, the same seed, the model in float64 so near-ties cannot flip):

* **naive** — every leave-one-out context is encoded from scratch;
* **prefix reuse** (``prefix_reuse=true``, the default) — the contexts are
  walked as the tree they share (:mod:`plugins.icm_label.contexts`) and each
  level's key/values are kept across energy evaluations and iterations.

Both searches memoise whole energy evaluations of a label set seen before
(the published pipeline caches queries too), so the ratio measures key/value
reuse only. Prints token-forwards (tokens run through the model), forward
calls and wall time of each, their ratios (issue goal: >= 3x fewer
token-forwards) and whether the two searches produced the same labels and
trajectories. Asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "workspace.example/transformers/tiny-icm-arith"))
    parser.add_argument("--data", default=str(ROOT / "workspace.example/datasets/icm/arithmetic/train_gsm8k.json"))
    parser.add_argument("--claims", type=int, default=24, help="claims in the batch (whole groups, from the start)")
    parser.add_argument("--K", type=int, default=20, help="search iterations")
    parser.add_argument("--seed", type=int, default=27565976)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch
    import transformers

    from models.loading import load_model
    from plugins.icm_label.local_backend import LocalBackend
    from plugins.icm_label.search import SearchConfig, initial_state, run_batch
    from plugins.icm_label.testbeds import get_testbed, load_claims

    torch.set_num_threads(args.threads)
    model, tokenizer = load_model(args.model)
    model = model.to(torch.float64)
    testbed = get_testbed("gsm8k", extra=[])
    claims = load_claims(args.data, testbed)[: args.claims]
    config = SearchConfig(K=args.K, seed=args.seed)
    params = sum(p.numel() for p in model.parameters())
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, python {platform.python_version()}, "
          f"threads {args.threads}, load average {os.getloadavg()[0]:.2f}")
    print(f"model {Path(args.model).name} ({params / 1e6:.2f} M params, float64), {len(claims)} claims, K={args.K}, "
          f"seed {args.seed}")

    results = {}
    for name, reuse in (("naive", False), ("prefix reuse", True)):
        backend = LocalBackend(model, tokenizer, testbed, prefix_reuse=reuse)
        start = time.perf_counter()
        state = run_batch(backend, testbed, claims, config, initial_state(claims, config, 0))
        seconds = time.perf_counter() - start
        results[name] = (state, dict(backend.stats), seconds)
        print(f"{name:>13}: {backend.stats['token_forwards']:>10,} token-forwards, {backend.stats['forwards']:>6,} "
              f"forwards, {seconds:7.1f} s, {state['energy_evaluations']} energy evaluations, "
              f"{sum(y is not None for y in state['labels'])} labelled, final U {state['final']['energy']:.3f}")

    naive, reuse = results["naive"], results["prefix reuse"]
    same_labels = naive[0]["labels"] == reuse[0]["labels"]
    same_path = [(r["claim"], r["accepted"]) for r in naive[0]["trajectory"]] == \
                [(r["claim"], r["accepted"]) for r in reuse[0]["trajectory"]]
    print(f"token-forwards ratio naive / prefix reuse: {naive[1]['token_forwards'] / reuse[1]['token_forwards']:.2f}x "
          "(goal >= 3x)")
    print(f"forward calls ratio: {naive[1]['forwards'] / reuse[1]['forwards']:.2f}x; "
          f"wall-time ratio: {naive[2] / reuse[2]:.2f}x")
    print(f"same labels: {'yes' if same_labels else 'NO'}; same trajectory: {'yes' if same_path else 'NO'}; "
          f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
