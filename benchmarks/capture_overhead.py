"""How much do our capture and steering hooks cost, and how do nnsight and steering-vectors compare?

Prints ratios measured in this one run (median wall time of each method over
the median of a bare forward pass on the same inputs); asserts nothing about
timing. See benchmarks/README.md for what each ratio means and the goals.

    python benchmarks/capture_overhead.py            # the default model below
    python benchmarks/capture_overhead.py --repeats 30 --threads 2

nnsight and steering-vectors are optional (benchmarks/requirements.txt);
a method whose library is missing is reported as skipped.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def build_model(args: argparse.Namespace) -> torch.nn.Module:
    """A Llama-style model from a config in memory: big enough that 2 CPU cores take real time."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.hidden * 11 // 4,
        num_hidden_layers=args.layers, num_attention_heads=args.hidden // 32, num_key_value_heads=args.hidden // 64,
        max_position_embeddings=max(512, args.seq * 2), bos_token_id=0, eos_token_id=1, pad_token_id=2,
    )
    return AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()


def build_inputs(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded batch with ragged lengths, so 'last real token' is not simply position -1."""
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(3, args.vocab, (args.batch, args.seq), generator=gen)
    lengths = torch.linspace(args.seq // 2, args.seq, args.batch).long()
    mask = (torch.arange(args.seq)[None, :] < lengths[:, None]).long()
    ids = ids.masked_fill(mask == 0, 2)
    return ids, mask, lengths - 1


def time_methods(methods: dict[str, Callable[[], Any]], baseline: str, warmup: int, repeats: int,
                 seed: int = 0) -> dict[str, dict[str, list[float]]]:
    """Paired timing: each round runs, for every method in a shuffled order, the baseline then the method.

    Each method's time is thus paired with a baseline run right next to it,
    so load from other processes, which comes and goes, mostly hits both
    sides of a pair. Records wall time and this process's CPU time (all
    threads); ``times[name]["base_wall"]`` holds the paired baseline runs.
    """
    import random

    order = random.Random(seed)
    for fn in methods.values():
        for _ in range(warmup):
            fn()
    times: dict[str, dict[str, list[float]]] = {
        name: {"wall": [], "cpu": [], "base_wall": [], "base_cpu": []} for name in methods
    }

    def clock(fn: Callable[[], Any]) -> tuple[float, float]:
        cpu, wall = time.process_time(), time.perf_counter()
        fn()
        return time.perf_counter() - wall, time.process_time() - cpu

    others = [name for name in methods if name != baseline]
    for _ in range(repeats):
        order.shuffle(others)
        for name in others:
            b_wall, b_cpu = clock(methods[baseline])
            wall, cpu = clock(methods[name])
            times[name]["wall"].append(wall)
            times[name]["cpu"].append(cpu)
            times[name]["base_wall"].append(b_wall)
            times[name]["base_cpu"].append(b_cpu)
            times[baseline]["wall"].append(b_wall)
            times[baseline]["cpu"].append(b_cpu)
    for kind in ("wall", "cpu"):
        times[baseline][f"base_{kind}"] = list(times[baseline][kind])
    return times


def paired_ratio(times: dict[str, dict[str, list[float]]], name: str, kind: str = "wall") -> float:
    """Median over pairs of (method time / the adjacent baseline time)."""
    return statistics.median(a / b for a, b in zip(times[name][kind], times[name][f"base_{kind}"]))


def capture_methods(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, last: torch.Tensor,
                    skipped: dict[str, str]) -> dict[str, Callable[[], list[torch.Tensor]]]:
    """Each method returns the last real token's block output at every layer: ``n_layers x [batch, hidden]``."""
    rows = torch.arange(ids.shape[0])
    n_layers = model.config.num_hidden_layers

    def bare() -> list[torch.Tensor]:
        model(input_ids=ids, attention_mask=mask)
        return []

    def hidden_states() -> list[torch.Tensor]:
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        # transformers' last entry has the final norm applied; the last block's output is not exposed.
        return [h[rows, last] for h in out.hidden_states[1:n_layers]]

    methods: dict[str, Callable[[], list[torch.Tensor]]] = {"bare forward": bare}
    try:
        from models.hooks import capture

        def ours() -> list[torch.Tensor]:
            with capture(model, None, point="post", reduction="last", attention_mask=mask) as cap:
                model(input_ids=ids, attention_mask=mask)
            return [cap.values[i] for i in range(n_layers)]

        methods["latentrun capture"] = ours
    except ImportError as err:
        skipped["latentrun capture"] = f"models.hooks: {err}"
    methods["output_hidden_states"] = hidden_states

    try:
        from nnsight import NNsight

        wrapped = NNsight(model)

        def nnsight_capture() -> list[torch.Tensor]:
            saved = []
            with wrapped.trace(input_ids=ids, attention_mask=mask):
                for i in range(n_layers):
                    saved.append(wrapped.model.layers[i].output[rows, last].save())
            return saved

        methods["nnsight trace"] = nnsight_capture
    except ImportError as err:
        skipped["nnsight trace"] = str(err)

    try:
        from steering_vectors import record_activations

        def sv_capture() -> list[torch.Tensor]:
            with record_activations(model, layer_type="decoder_block") as rec:
                model(input_ids=ids, attention_mask=mask)
            # record_activations keeps every token (cloned); reduce afterwards as a user would.
            return [rec[i][0][rows, last] for i in range(n_layers)]

        methods["steering-vectors record_activations"] = sv_capture
    except ImportError as err:
        skipped["steering-vectors record_activations"] = str(err)
    return methods


def check_agreement(methods: dict[str, Callable[[], list[torch.Tensor]]]) -> dict[str, str]:
    """Every capture must return the same numbers, or its timing means nothing."""
    results = {name: fn() for name, fn in methods.items() if name != "bare forward"}
    reference_name = next((n for n in results if n != "output_hidden_states"), None)
    if reference_name is None:
        return {}
    ref = results[reference_name]
    verdict = {}
    for name, values in results.items():
        n = min(len(values), len(ref))
        same = n > 0 and all(torch.allclose(a, b, atol=1e-5) for a, b in zip(values[:n], ref[:n]))
        verdict[name] = f"{'agrees' if same else 'DIFFERS'} with {reference_name} on {n} layers"
    return verdict


def scoring_data(args: argparse.Namespace) -> tuple[Any, list[str], list[str]]:
    """A word-level tokenizer over synthetic words and log-likelihood requests of ~seq tokens."""
    from models.training import train_tokenizer

    words = [f"w{i}" for i in range(args.vocab - 8)]
    tok = train_tokenizer([" ".join(words)], vocab_size=args.vocab, kind="wordlevel")
    gen = torch.Generator().manual_seed(2)
    contexts, continuations = [], []
    for _ in range(args.requests):
        low = max(1, args.seq // 2)  # context + 4 continuation tokens stay within --seq
        n_ctx = int(torch.randint(low, max(low + 1, args.seq - 8), (1,), generator=gen))
        pick = torch.randint(0, len(words), (n_ctx + 4,), generator=gen).tolist()
        contexts.append(" ".join(words[i] for i in pick[:n_ctx]))
        continuations.append(" " + " ".join(words[i] for i in pick[n_ctx:]))
    return tok, contexts, continuations


def steering_methods(model: torch.nn.Module, args: argparse.Namespace,
                     skipped: dict[str, str]) -> dict[str, Callable[[], Any]]:
    from models.scoring import score_continuations

    tok, contexts, continuations = scoring_data(args)
    direction = torch.randn(args.hidden, generator=torch.Generator().manual_seed(3))
    layer = args.layers // 2

    def plain() -> list[float]:
        return score_continuations(model, tok, contexts, continuations, batch_size=args.batch)

    methods: dict[str, Callable[[], Any]] = {"scoring, no hook": plain}
    try:
        from models.hooks import steer

        def steered(positions: str) -> Callable[[], list[float]]:
            def run() -> list[float]:
                with steer(model, [layer], direction, mode="addition", scale=4.0, positions=positions):
                    return score_continuations(model, tok, contexts, continuations, batch_size=args.batch)
            return run

        methods[f"scoring, steer layer {layer} all tokens"] = steered("all")
        methods[f"scoring, steer layer {layer} last token"] = steered("last")
    except ImportError as err:
        skipped["latentrun steer"] = f"models.hooks: {err}"
    return methods


def report(title: str, times: dict[str, dict[str, list[float]]], goals: dict[str, float]) -> None:
    print(f"\n{title}")
    print(f"  {'method':<42} {'median ms':>10} {'IQR ms':>8} {'ratio':>7} {'cpu ratio':>9}  goal")
    for name, t in times.items():
        wall = t["wall"]
        med = statistics.median(wall)
        q = statistics.quantiles(wall, n=4) if len(wall) > 1 else [med, med, med]
        ratio = paired_ratio(times, name)
        cpu = paired_ratio(times, name, "cpu")
        goal = goals.get(name)
        mark = "" if goal is None else f"<= {goal:.2f}x {'met' if ratio <= goal else 'NOT met'}"
        print(f"  {name:<42} {med * 1e3:>10.1f} {(q[2] - q[0]) * 1e3:>8.1f} {ratio:>6.3f}x {cpu:>8.3f}x  {mark}")


def load_average() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--requests", type=int, default=32, help="log-likelihood requests per scoring call")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import transformers

    versions = [f"python {platform.python_version()}", f"torch {torch.__version__}",
                f"transformers {transformers.__version__}"]
    for dist in ("nnsight", "steering-vectors"):
        try:
            from importlib.metadata import version

            versions.append(f"{dist} {version(dist)}")
        except Exception:
            versions.append(f"{dist} (not installed)")
    print("capture/steering overhead —", ", ".join(versions))
    print(f"model: Llama-style, {args.layers} layers, hidden {args.hidden}, vocab {args.vocab}; "
          f"batch {args.batch} x seq {args.seq} (right-padded, ragged); torch threads {torch.get_num_threads()}; "
          f"{args.repeats} rounds of paired runs after {args.warmup} warm-ups; "
          f"1-min load average at start {load_average()} (above ~{torch.get_num_threads()} means other "
          "processes competed for the CPU and the ratios are noisier)")

    model = build_model(args)
    ids, mask, last = build_inputs(args)
    skipped: dict[str, str] = {}
    with torch.no_grad():
        cap = capture_methods(model, ids, mask, last, skipped)
        for name, verdict in check_agreement(cap).items():
            print(f"  check: {name} {verdict}")
        times = time_methods(cap, "bare forward", args.warmup, args.repeats)
        report("All-layer capture, last real token, vs bare batched forward:", times,
               {"latentrun capture": 1.10})
        if "latentrun capture" in times:
            ours = paired_ratio(times, "latentrun capture")
            for other in ("nnsight trace", "steering-vectors record_activations"):
                if other in times:
                    theirs = paired_ratio(times, other)
                    verdict = "beats" if ours < theirs else "does NOT beat"
                    note = "  (under 1%: within run-to-run noise)" if abs(ours - theirs) < 0.01 else ""
                    print(f"  latentrun capture ({ours:.3f}x) {verdict} {other} ({theirs:.3f}x){note}")

        st = steering_methods(model, args, skipped)
        times = time_methods(st, "scoring, no hook", max(1, args.warmup // 2), max(5, args.repeats // 2))
        report(f"Log-likelihood scoring ({args.requests} requests, batch {args.batch}) with a steering hook vs none:",
               times, {name: 1.05 for name in st if name.startswith("scoring, steer")})
    for name, why in skipped.items():
        print(f"  skipped {name}: {why}")
    print(f"\n1-min load average at end {load_average()}")


if __name__ == "__main__":
    main()
