"""Task-vector layer sweep: batched + KV-cached (ours) vs naive, as a ratio measured in one run.

    python benchmarks/task_vector_sweep.py                       # the example model, ~1 min on 2 cores
    python benchmarks/task_vector_sweep.py --model PATH --datasets 20 --threads 2

Both sweeps start from the same task vectors θ (one demonstration pass per
dummy prompt, shared) and patch θ at every layer into every query-only prompt
of the six algorithmic tasks:

* **naive** — one full forward of every query prompt per layer, unbatched;
* **ours** (:func:`plugins.task_vector_patching.method.patched_predictions`) —
  prompts of one token length batched, the prefix encoded once (KV cache),
  only the last token re-run per layer.

Prints both wall times, the ratio (issue goal: >= 3x) and whether the
predictions — hence the accuracies — are identical. Asserts nothing about time.
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
    parser.add_argument("--model", default=str(ROOT / "workspace.example/transformers/tiny-icl-llama"))
    parser.add_argument("--datasets", type=int, default=20, help="dev datasets per task")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--mode", default="replace", choices=["replace", "add"])
    args = parser.parse_args()

    import torch
    import transformers

    from models.layers import get_layers
    from models.loading import load_model
    from plugins.task_vector_patching.method import (
        encode, patched_predictions, patched_predictions_naive, task_vectors,
    )
    from plugins.task_vector_patching.tasks import (
        ALGORITHMIC, DEFAULT_FORMAT, build_prompt, filter_single_token, load_task, sample_datasets,
    )

    torch.set_num_threads(args.threads)
    model, tok = load_model(args.model)
    model.eval()
    n_layers = len(get_layers(model))
    layers = list(range(n_layers))
    n_params = sum(p.numel() for p in model.parameters())
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, python {platform.python_version()}; "
          f"threads {torch.get_num_threads()}; load average {os.getloadavg()[0]:.2f}")
    print(f"model {Path(args.model).name}: {n_params / 1e6:.2f}M parameters, {n_layers} layers; "
          f"{len(ALGORITHMIC)} tasks x {args.datasets} datasets x {n_layers} layers, mode {args.mode}")

    work = []
    for name in ALGORITHMIC:
        task = filter_single_token(load_task(name, None), tok)
        sets = sample_datasets(task, args.datasets, 5, 2, seed=f"bench:{name}")
        vectors = task_vectors(model, tok, sets, DEFAULT_FORMAT, "\n", args.batch_size)
        if args.mode == "add":
            vectors = vectors - vectors.mean(0, keepdim=True)
        seqs = encode(tok, [build_prompt([], ds["query"][0]) for ds in sets])
        work.append((seqs, vectors))

    def run(fn, **kw):
        start = time.perf_counter()
        out = [fn(model, seqs, vectors, layers, args.mode, 1.0, **kw) for seqs, vectors in work]
        return time.perf_counter() - start, out

    run(patched_predictions, batch_size=args.batch_size)  # warm-up
    naive_s, naive = run(patched_predictions_naive)
    fast_s, fast = run(patched_predictions, batch_size=args.batch_size)
    same = all(torch.equal(a, b) for a, b in zip(naive, fast))
    n_forwards = sum(len(s) for s, _ in work) * n_layers
    print(f"naive sweep  : {naive_s:7.3f} s  ({n_forwards} full forwards)")
    print(f"batched sweep: {fast_s:7.3f} s")
    print(f"ratio naive / batched: {naive_s / fast_s:.1f}x (goal >= 3x); identical predictions: {same}")


if __name__ == "__main__":
    main()
