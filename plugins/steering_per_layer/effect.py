"""Sub-job ``analyze_steering_effect_per_layer``: what steering each layer does at the answer position.

For every layer ``l`` of the run, the intervention (mode, normalisation,
token mode, hook point, scale of :mod:`interventions`) is applied at ``l``
alone along ``l``'s own direction, and the answer position of the
``evaluation`` prompts (``... The answer is (``, the same texts and scorer
as ``evaluate_accuracy_reasoning_memorizing``) is scored with and without it:

* **KL(unsteered ‖ steered)** of the next-token distribution (full vocabulary);
* **Δ log p**: change of the log-probability of the correct option letter;
* **Δ accuracy**: option accuracy (highest letter log-probability) steered
  minus unsteered, with a paired-bootstrap interval.

Beside it, a **first-order estimate** of Δ log p from one backward pass for
all layers: with ``g_t = ∂ log p(correct) / ∂h_t`` at the hook point and
``δ_t`` the change the intervention makes to token ``t``, the estimate is
``Σ_t g_t · δ_t`` over the steered tokens — ``c · Σ_t g_t·u`` for additions,
``c · Σ_t (g_t·u)(h_t·u)`` for amplification (``c`` = scale, times ‖overall
mean‖ with SCALE_WITH_OVERALL_MAGNITUDE) and ``−Σ_t (g_t·u)(h_t·u)`` for
ablation, summed over the hook points when there are several
(``pre+attn+mlp``); ``u`` is the direction of layer ``l + direction_layer_offset``.
Gradients are projected on the directions inside the hooks
(``models.capture`` with a callable reduction), so a pass keeps
``batch × seq × layers`` numbers. The seed instead differentiated
KL(p ‖ stop-grad p), whose value and gradient are zero where evaluated.

Also the seed's diagnostic: the largest cosine similarity of each layer's
direction with a row of the input embedding matrix (and of the unembedding
when it is not tied), with the token it belongs to.

Huginn's random initial state is seeded identically for every pass, so the
only difference between passes is the intervention (scale 0 gives KL = 0 and
Δ = 0 exactly). Each layer's per-item numbers go to the checkpoint as soon as
they are measured: a killed run resumes at the next layer.
"""

from __future__ import annotations

import dataclasses
import math
from contextlib import ExitStack, contextmanager
from typing import Any, Iterator, Mapping, Sequence

from plugins.steering_per_layer.evaluate import (
    SUBSETS, answer_contexts, answer_logprobs, bootstrap_diff, build_items, letter_ids, option_predictions,
)
from plugins.steering_per_layer.interventions import (
    MODIFICATION_MODES, TOKEN_MODES, Intervention, InterventionError, model_config, num_layers, preflight,
    read_directions,
)

LETTERS = "ABCDEFGHIJ"


# -- layers ------------------------------------------------------------------------------------------------


def requested_layers(params: Mapping[str, Any]) -> list[int]:
    """``layer_indices`` as ints; empty (or None) means every layer."""
    raw = params.get("layer_indices") or []
    raw = [raw] if isinstance(raw, (int, str)) else list(raw)
    try:
        layers = [int(k) for k in raw]
    except (TypeError, ValueError):
        raise InterventionError(f"layer_indices={raw!r}: expected integers (or nothing, for every layer)") from None
    if len(set(layers)) != len(layers):
        raise InterventionError(f"layer_indices={layers}: a layer is listed twice")
    return layers


def template_intervention(params: Mapping[str, Any], layers: Sequence[int]) -> Intervention:
    """The checked intervention, applied to ``layers`` (one at a time by the analysis)."""
    return Intervention.from_params({**params, "layer_indices": list(layers) or [0]})


def describe_each(intervention: Intervention) -> str:
    """``describe()`` without the (long) layer list: each layer is steered alone."""
    offset = intervention.direction_layer_offset
    single = dataclasses.replace(intervention, layer_indices=(0,), direction_layer_offset=0)
    each = f"each of {len(intervention.layer_indices)} layers alone" + (
        f" (layer k along the direction of layer k{offset:+d})" if offset else "")
    return single.describe().replace("layers=[0]", each)


def resolve_layers(params: Mapping[str, Any], model_dir: Any) -> list[int]:
    """The requested layers, or every layer the model has (from config.json: nothing is loaded)."""
    layers = requested_layers(params)
    if layers:
        return layers
    n = num_layers(model_config(model_dir), params.get("num_steps"))
    if n is None:
        raise InterventionError(f"{model_dir}/config.json does not say how many layers the model has: "
                                "give layer_indices")
    return list(range(n))


# -- measurements --------------------------------------------------------------------------------------------


def forward_kwargs(model: Any) -> dict[str, Any]:
    """Huginn runs every recurrence step with gradient only when num_steps is an int (not None)."""
    from plugins.common.extraction import is_huginn

    return {"num_steps": int(model.config.mean_recurrence)} if is_huginn(model) else {}


@contextmanager
def frozen(model: Any) -> Iterator[None]:
    """No parameter gradients during the estimate (the activations' gradients are all it needs)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def correct_ids(items: Sequence[Any], tokenizer: Any) -> list[int]:
    """Token id of each item's correct option letter (the token whose log-probability is tracked)."""
    return [letter_ids(tokenizer, len(item.options))[LETTERS.index(item.answer)] for item in items]


def per_item(logprobs: Any, items: Sequence[Any], tokenizer: Any, targets: Sequence[int]) -> dict[str, list]:
    """Log-probability of the correct letter and correctness of the option prediction, per item."""
    predictions = option_predictions(logprobs, items, tokenizer)
    return {"logprob": [float(logprobs[i, t]) for i, t in enumerate(targets)],
            "correct": [int(pred["prediction"] == item.answer) for pred, item in zip(predictions, items)]}


def kl_divergence(base: Any, steered: Any) -> Any:
    """KL(base ‖ steered) per row of two log-probability matrices (0·log 0 = 0)."""
    import torch

    p = base.exp()
    return torch.where(p > 0, p * (base - steered), torch.zeros_like(p)).sum(-1)


def measure_layer(model: Any, tokenizer: Any, intervention: Intervention, directions: Mapping[str, Any], layer: int,
                  prompts: Sequence[str], items: Sequence[Any], targets: Sequence[int], base: Any, batch_size: int,
                  seed: int) -> dict[str, list]:
    """Steer ``layer`` alone and compare the answer position with the unsteered ``base`` log-probabilities."""
    single = dataclasses.replace(intervention, layer_indices=(layer,))
    with single.steer(model, directions):
        steered = answer_logprobs(model, tokenizer, prompts, batch_size, seed)
    now = per_item(steered, items, tokenizer, targets)
    return {"kl": [float(v) for v in kl_divergence(base, steered)],
            "delta_logprob": [float(steered[i, t] - base[i, t]) for i, t in enumerate(targets)],
            "steered_correct": now["correct"]}


def coefficients(intervention: Intervention, directions: Mapping[str, Any]) -> list[float]:
    """The factor ``c`` of each layer's first-order term (see the module docstring), in layer order."""
    if MODIFICATION_MODES[intervention.modification_mode] == "ablation":
        return [-1.0] * len(intervention.layer_indices)
    if intervention.direction_normalization_mode == "SCALE_WITH_OVERALL_MAGNITUDE":  # additions, amplifications
        return [intervention.scale * float(directions["overall_mean"][k].double().norm())
                for k in intervention.direction_layers]
    return [intervention.scale] * len(intervention.layer_indices)


def first_order(model: Any, tokenizer: Any, intervention: Intervention, directions: Mapping[str, Any],
                prompts: Sequence[str], targets: Sequence[int], batch_size: int, seed: int) -> dict[int, list[float]]:
    """First-order estimate of Δ log p(correct) per layer and item, from one backward pass per batch.

    With several hook points the terms of all points add up (the linearisation of steering them together).
    """
    import torch

    from models.capture import capture, capture_grads
    from models.scoring import next_token_batches

    layers = list(intervention.layer_indices)
    units = torch.stack([directions["unit_direction"][k].double() for k in intervention.direction_layers])
    units = (units / units.norm(dim=1, keepdim=True).clamp_min(1e-30)).float()
    cast: dict[tuple, Any] = {}

    def project(t: Any) -> Any:  # [batch, seq, hidden] -> [batch, seq, n_layers], in float32
        key = (t.device,)
        if key not in cast:
            cast[key] = units.to(t.device).T.contiguous()
        return t.float() @ cast[key]

    coef = coefficients(intervention, directions)
    linear = MODIFICATION_MODES[intervention.modification_mode] == "addition"
    last_only = TOKEN_MODES[intervention.token_modification_mode] == "last"
    out: dict[int, list[float]] = {k: [0.0] * len(prompts) for k in layers}
    torch.manual_seed(seed)  # the same Huginn initial states as the measured passes
    with ExitStack() as stack:
        stack.enter_context(frozen(model))
        grads = {pt: stack.enter_context(capture_grads(model, layers, point=pt, reduction=project))
                 for pt in intervention.hook_points}
        acts = {} if linear else {pt: stack.enter_context(capture(model, layers, point=pt, reduction=project))
                                  for pt in intervention.hook_points}
        for batch in next_token_batches(model, tokenizer, answer_contexts(prompts), batch_size=batch_size,
                                        grad=True, **forward_kwargs(model)):
            rows = torch.arange(len(batch.indices), device=batch.logits.device)
            wanted = torch.tensor([targets[i] for i in batch.indices], device=batch.logits.device)
            logprob = torch.log_softmax(batch.logits.float(), dim=-1)[rows, wanted]
            logprob.sum().backward()  # rows are independent: each row's gradient is its own
            mask = batch.attention_mask.cpu()
            if last_only:  # the steering hook's "last real token": last 1 of the attention mask
                last = (mask.long() * torch.arange(mask.shape[1])).argmax(-1)
                select = torch.zeros(mask.shape, dtype=torch.float32)
                select[torch.arange(mask.shape[0]), last] = 1.0
            else:  # ALL_TOKENS steers every column; padding columns have zero gradient
                select = torch.ones(mask.shape, dtype=torch.float32)
            for j, layer in enumerate(layers):
                total = torch.zeros(mask.shape[0])
                for pt, grad in grads.items():
                    if layer not in grad.values:
                        raise RuntimeError(f"no gradient reached layer {layer} at point {pt!r}: "
                                           "the answer position does not depend on it")
                    term = grad.values[layer][..., j].cpu()
                    if not linear:
                        term = term * acts[pt].values[layer][..., j].cpu()
                    total += (term * select).sum(-1)
                for r, i in enumerate(batch.indices):
                    out[layer][i] = coef[j] * float(total[r])
            for grad in grads.values():
                grad.clear()
    return out


def embedding_cosines(matrix: Any, units: Any, chunk: int = 8192) -> tuple[list[float], list[int]]:
    """Largest cosine similarity of each row of ``units`` with any row of ``matrix``, and that row's index."""
    import torch

    u = units.double()
    u = u / u.norm(dim=1, keepdim=True).clamp_min(1e-30)
    best = torch.full((u.shape[0],), -2.0, dtype=torch.float64)
    where = torch.zeros(u.shape[0], dtype=torch.long)
    for start in range(0, matrix.shape[0], chunk):
        rows = matrix[start:start + chunk].detach().to("cpu", torch.float64)
        rows = rows / rows.norm(dim=1, keepdim=True).clamp_min(1e-30)
        value, index = (u @ rows.T).max(dim=1)
        better = value > best
        best = torch.where(better, value, best)
        where = torch.where(better, index + start, where)
    return best.tolist(), where.tolist()


def embedding_diagnostic(model: Any, tokenizer: Any, directions: Mapping[str, Any],
                         layers: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Per layer: max cosine with the input embeddings (and the unembedding, if untied) and the token."""
    import torch

    units = torch.stack([directions["unit_direction"][k] for k in layers])
    embed = model.get_input_embeddings().weight
    matrices = {"embedding": embed}
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    tied = head is None or head.weight.data_ptr() == embed.data_ptr()
    if not tied:
        matrices["unembedding"] = head.weight
    out: dict[int, dict[str, Any]] = {k: {"tied_embeddings": tied} for k in layers}
    for name, matrix in matrices.items():
        values, index = embedding_cosines(matrix, units)
        tokens = tokenizer.convert_ids_to_tokens(index)
        for k, value, token_id, token in zip(layers, values, index, tokens):
            out[k].update({f"cos_{name}": value, f"cos_{name}_token_id": token_id, f"cos_{name}_token": token})
    return out


# -- summaries ------------------------------------------------------------------------------------------------


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def spearman(x: Sequence[float | None], y: Sequence[float | None]) -> float | None:
    """Spearman's rho over layers (None with fewer than 3 layers or a constant side)."""
    from scipy.stats import spearmanr

    pairs = [(a, b) for a, b in zip(x, y) if a is not None and b is not None]
    if len(pairs) < 3 or len({a for a, _ in pairs}) < 2 or len({b for _, b in pairs}) < 2:
        return None
    rho = spearmanr([a for a, _ in pairs], [b for _, b in pairs]).statistic
    return None if rho is None or math.isnan(rho) else float(rho)


def summarize(items: Sequence[Any], baseline: Mapping[str, list], measured: Mapping[int, Mapping[str, list]],
              estimates: Mapping[int, list[float]], layers: Sequence[int], names: Mapping[int, str],
              diagnostic: Mapping[int, Mapping[str, Any]], iters: int, seed: int) -> list[dict[str, Any]]:
    """One row per layer x subset (means over the subset's items)."""
    rows = []
    for layer in layers:
        m = measured[layer]
        for subset in SUBSETS:
            idx = [i for i, item in enumerate(items) if item.label == subset]
            base = [baseline["correct"][i] for i in idx]
            steered = [m["steered_correct"][i] for i in idx]
            ci = bootstrap_diff(base, steered, iters, seed)
            row = {"layer": layer, "name": names.get(layer, str(layer)), "subset": subset, "n": len(idx),
                   "kl": _mean([m["kl"][i] for i in idx]),
                   "delta_logprob": _mean([m["delta_logprob"][i] for i in idx]),
                   "first_order": _mean([estimates[layer][i] for i in idx]),
                   "accuracy_baseline": _mean(base), "accuracy_steered": _mean(steered),
                   "accuracy_change": _mean([s - b for b, s in zip(base, steered)]),
                   "accuracy_change_ci_low": ci[0] if ci else None, "accuracy_change_ci_high": ci[1] if ci else None}
            row.update({k: v for k, v in diagnostic[layer].items() if k in ("cos_embedding", "cos_unembedding")})
            rows.append(row)
    return rows


def agreement(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per subset: rank correlations of estimate and measurement over layers, and the top layer of each."""
    out = {}
    for subset in SUBSETS:
        own = [r for r in rows if r["subset"] == subset and r["n"]]
        if not own:
            continue

        def top(key: str, absolute: bool = False) -> int:
            return max(own, key=lambda r: abs(r[key]) if absolute else r[key])["layer"]

        out[subset] = {
            "spearman_first_order_vs_delta_logprob": spearman([r["first_order"] for r in own],
                                                              [r["delta_logprob"] for r in own]),
            "spearman_abs_first_order_vs_kl": spearman([abs(r["first_order"]) for r in own], [r["kl"] for r in own]),
            "top_layer_kl": top("kl"), "top_layer_abs_delta_logprob": top("delta_logprob", True),
            "top_layer_abs_first_order": top("first_order", True),
        }
    return out


def plot(path: Any, rows: Sequence[Mapping[str, Any]], title: str) -> None:
    """Effect vs layer, one line per subset: KL | Δ log p with the first-order estimate | Δ accuracy | cosine."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from runner.atomic import atomic_path

    fig, axes = plt.subplots(2, 2, figsize=(12, 7.5), sharex=True)
    colors = {"reasoning": "tab:red", "memorizing": "tab:blue"}
    for subset in SUBSETS:
        own = [r for r in rows if r["subset"] == subset]
        if not own or not own[0]["n"]:
            continue
        x = [r["layer"] for r in own]
        c = colors[subset]
        axes[0, 0].plot(x, [r["kl"] for r in own], marker="o", ms=3, color=c, label=subset)
        axes[0, 1].plot(x, [r["delta_logprob"] for r in own], marker="o", ms=3, color=c, label=f"{subset} measured")
        axes[0, 1].plot(x, [r["first_order"] for r in own], ls="--", color=c, label=f"{subset} first-order")
        axes[1, 0].plot(x, [r["accuracy_change"] for r in own], marker="o", ms=3, color=c, label=subset)
    first = [r for r in rows if r["subset"] == SUBSETS[0]]
    x = [r["layer"] for r in first]
    axes[1, 1].plot(x, [r.get("cos_embedding") for r in first], marker="o", ms=3, color="k", label="embedding")
    if first and first[0].get("cos_unembedding") is not None:
        axes[1, 1].plot(x, [r["cos_unembedding"] for r in first], marker="o", ms=3, color="tab:green",
                        label="unembedding")
    labels = (("KL(unsteered ‖ steered)", "KL at the answer position"),
              ("Δ log p(correct letter)", "Δ log p: measured vs first-order"),
              ("Δ accuracy", "accuracy change"), ("max cosine", "direction vs token embeddings"))
    for ax, (ylabel, sub) in zip(axes.flat, labels):
        ax.set_ylabel(ylabel)
        ax.set_title(sub, fontsize=10)
        ax.axhline(0, color="0.8", lw=0.8)
        ax.legend(fontsize=8)
    for ax in axes[1]:
        ax.set_xlabel("layer")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


# -- the sub-job ----------------------------------------------------------------------------------------------


def check_baseline(ctx: Any, base_items: dict[str, list]) -> None:
    """Keep a resumed run consistent: layers measured against another baseline are measured again."""
    saved = ctx.checkpoint.load("baseline")
    same = saved is not None and len(saved["logprob"]) == len(base_items["logprob"]) and all(
        abs(a - b) <= 1e-4 for a, b in zip(saved["logprob"], base_items["logprob"]))
    if saved is not None and not same:
        ctx.logger.warning("checkpoint baseline differs from this run's (model files changed?): measuring anew")
        ctx.checkpoint.clear()
    ctx.checkpoint.save("baseline", base_items)


def analyze_steering_effect(ctx: Any) -> None:
    import torch

    from models.layers import get_layers
    from models.loading import limit_threads_for_tiny_model
    from plugins.common.extraction import load
    from plugins.common.tables import rows_table
    from runner.atomic import write_csv, write_json, write_text

    p = ctx.params
    model_dir = ctx.path(f"transformers/{p['model']}")
    directions_path = ctx.reads[-1]
    layers = resolve_layers(p, model_dir)
    intervention = template_intervention(p, layers)
    preflight(intervention, p["model"], model_dir, directions_path, p.get("num_steps"))  # before loading
    model, tokenizer = load(ctx.workspace, p, ctx.device_map)
    limit_threads_for_tiny_model(model)
    directions = read_directions(directions_path, intervention.direction_layers)
    names = {layer.index: layer.name for layer in get_layers(model)}
    items, prompts = build_items(ctx, tokenizer)
    targets = correct_ids(items, tokenizer)
    bs, seed = p["batch_size"], p["seed"]
    described = describe_each(intervention)
    ctx.logger.info("steering effect on %d items: %s", len(items), described)

    base = answer_logprobs(model, tokenizer, prompts, bs, seed)
    baseline = per_item(base, items, tokenizer, targets)
    check_baseline(ctx, baseline)

    estimates = ctx.checkpoint.load("first_order")
    if estimates is None:
        estimates = first_order(model, tokenizer, intervention, directions, prompts, targets, bs, seed)
        ctx.checkpoint.save("first_order", {str(k): v for k, v in estimates.items()})
    estimates = {int(k): v for k, v in estimates.items()}

    measured: dict[int, dict[str, list]] = {}
    for layer in layers:
        found = ctx.checkpoint.load(f"layer-{layer}")
        if found is not None:
            measured[layer] = found
    todo = [k for k in layers if k not in measured]
    if len(todo) < len(layers):
        ctx.logger.info("resuming: %d of %d layers measured before", len(layers) - len(todo), len(layers))
    for layer in ctx.progress(todo, total=len(todo), description="steering effect per layer"):
        measured[layer] = measure_layer(model, tokenizer, intervention, directions, layer, prompts, items, targets,
                                        base, bs, seed)
        ctx.checkpoint.save(f"layer-{layer}", measured[layer])

    by_source = dict(zip(intervention.direction_layers, layers))  # the direction each layer is steered with
    found = embedding_diagnostic(model, tokenizer, directions, intervention.direction_layers)
    diagnostic = {by_source[k]: value for k, value in found.items()}
    rows = summarize(items, baseline, measured, estimates, layers, names, diagnostic, p["bootstrap"], seed)
    ranks = agreement(rows)
    result = {
        "job": ctx.job, "run_id": ctx.run_id, "params": dict(p), "intervention": described,
        "layers": [{"layer": k, "name": names.get(k, str(k)), **diagnostic[k]} for k in layers],
        "rows": rows, "agreement": ranks,
        "items": [{"index": item.index, "label": item.label, "answer": item.answer,
                   "baseline_logprob": baseline["logprob"][i], "baseline_correct": baseline["correct"][i]}
                  for i, item in enumerate(items)],
        "per_item": {str(k): {**measured[k], "first_order": estimates[k]} for k in layers},
        "torch": torch.__version__,
    }
    write_json(ctx.writes[0], result)
    write_csv(ctx.writes[1], rows)
    shown = [{"layer": r["layer"], "name": r["name"], "subset": r["subset"], "n": r["n"], "KL": r["kl"],
              "Δlogp": r["delta_logprob"], "first-order": r["first_order"], "acc": r["accuracy_baseline"],
              "acc steered": r["accuracy_steered"], "Δacc": r["accuracy_change"],
              "cos(E)": r.get("cos_embedding"), **({"cos(U)": r["cos_unembedding"]} if "cos_unembedding" in r else {})}
             for r in rows]
    lines = [f"{subset}: spearman(first-order, Δlogp) = {_fmt(a['spearman_first_order_vs_delta_logprob'])}, "
             f"spearman(|first-order|, KL) = {_fmt(a['spearman_abs_first_order_vs_kl'])}; top layer by KL "
             f"{a['top_layer_kl']}, by |Δlogp| {a['top_layer_abs_delta_logprob']}, by |first-order| "
             f"{a['top_layer_abs_first_order']}" for subset, a in ranks.items()]
    table = rows_table(shown, f"steering effect per layer: {p['model']}, {described}", ".4g")
    text = table + "\n".join(lines) + "\n"
    write_text(ctx.writes[2], text)
    plot(ctx.writes[3], rows, f"{p['model']} / {p['dataset']}: {described}")
    ctx.logger.info("\n%s", text)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
