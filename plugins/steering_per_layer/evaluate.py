"""Sub-job ``evaluate_accuracy_reasoning_memorizing``: accuracy per subset, with and without an intervention.

``method=loglik`` (default, parse-free): the prompt (the seed's ``evaluation``
template: few-shot examples, question, lettered options) is followed by
``"The answer is ("`` — the form every few-shot answer has — and the
predicted option is the letter with the highest next-token log-probability
(``models.scoring.next_token_logprobs``; the answer position is the last real
token, so ``LAST_TOKEN`` steering acts where the letter is predicted).
``method=generate``: greedy generation and ``parse_answer``; unparseable
answers count as wrong and are counted and shown.
"""

from __future__ import annotations

from typing import Any, Sequence

from plugins.steering_per_layer.interventions import Intervention, preflight, read_directions

SUBSETS = ("reasoning", "memorizing")
ANSWER_PREFIX = "The answer is ("


def build_items(ctx: Any, tokenizer: Any = None) -> tuple[list[Any], list[str]]:
    from plugins.common.lirefs import FEW_SHOT_DIR, load_few_shot, load_lirefs
    from plugins.common.prompts import build_prompt, template_for

    p = ctx.params
    items = load_lirefs(ctx.path(f"datasets/lirefs/{p['dataset']}.json"), sample_size=p.get("sample_size"),
                        seed=p.get("seed", 0))
    few_shot: dict[str, list] = {}
    folder = ctx.path(FEW_SHOT_DIR)
    if p.get("few_shot", True) and folder.exists():
        few_shot = load_few_shot(folder)
    name = template_for("evaluation", p["model"])
    prompts = [build_prompt(item, name, few_shot=few_shot.get(item.category, ()), tokenizer=tokenizer)
               for item in items]
    return items, prompts


def letter_ids(tokenizer: Any, n: int) -> list[int]:
    from plugins.common.prompts import option_letters

    ids = []
    for letter in option_letters(n):
        row = tokenizer(letter, add_special_tokens=False)["input_ids"]
        if len(row) != 1:
            raise ValueError(f"option letter {letter!r} is {len(row)} tokens for this tokenizer; use method=generate")
        ids.append(int(row[0]))
    return ids


def answer_contexts(prompts: Sequence[str]) -> list[str]:
    """The texts whose next token is the answer letter (the answer position is their last token)."""
    return [p + ANSWER_PREFIX for p in prompts]


def answer_logprobs(model: Any, tokenizer: Any, prompts: Sequence[str], batch_size: int, seed: int) -> Any:
    """Next-token log-probabilities at the answer position, float32 ``[len(prompts), vocab]``."""
    import torch

    from models.scoring import next_token_logprobs

    torch.manual_seed(seed)  # Huginn's random initial state: identical draws with and without steering
    return next_token_logprobs(model, tokenizer, answer_contexts(prompts), batch_size=batch_size)


def option_predictions(logprobs: Any, items: Sequence[Any], tokenizer: Any) -> list[dict[str, Any]]:
    """The option letter with the highest log-probability per item, with every option's score."""
    out = []
    for row, item in zip(logprobs, items):
        ids = letter_ids(tokenizer, len(item.options))
        scores = [float(row[i]) for i in ids]
        best = max(range(len(scores)), key=lambda k: scores[k])
        out.append({"prediction": "ABCDEFGHIJ"[best], "scores": scores, "response": None})
    return out


def predict_loglik(model: Any, tokenizer: Any, items: Sequence[Any], prompts: Sequence[str], batch_size: int,
                   seed: int) -> list[dict[str, Any]]:
    return option_predictions(answer_logprobs(model, tokenizer, prompts, batch_size, seed), items, tokenizer)


def predict_generate(model: Any, tokenizer: Any, items: Sequence[Any], prompts: Sequence[str], batch_size: int,
                     seed: int, max_new_tokens: int) -> list[dict[str, Any]]:
    import torch

    from plugins.common.extraction import pad
    from plugins.common.prompts import parse_answer

    torch.manual_seed(seed)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out: list[dict[str, Any]] = []
    for start in range(0, len(prompts), batch_size):
        rows = [tokenizer(text, add_special_tokens=True)["input_ids"] for text in prompts[start:start + batch_size]]
        ids, mask = pad(rows, pad_id, side="left")
        with torch.no_grad():
            generated = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                       do_sample=False, pad_token_id=pad_id)
        for row in generated[:, ids.shape[1]:]:
            text = tokenizer.decode(row, skip_special_tokens=True)
            out.append({"prediction": parse_answer(text), "scores": None, "response": text})
    return out


def bootstrap_diff(base: Sequence[int], steered: Sequence[int], iters: int, seed: int) -> tuple[float, float] | None:
    """95% percentile interval of mean(steered − base) over items resampled in pairs (``plugins.common.stats``)."""
    from plugins.common.stats import accuracy

    if not base or iters <= 0:
        return None
    stat = accuracy([s - b for b, s in zip(base, steered)], seed=seed, n_boot=iters)
    return stat["lo"], stat["hi"]


def summarize(items: Sequence[Any], runs: dict[str, list[dict[str, Any]]], iters: int, seed: int) -> list[dict[str, Any]]:
    rows = []
    for subset in SUBSETS:
        idx = [i for i, item in enumerate(items) if item.label == subset]
        correct = {name: [int(preds[i]["prediction"] == items[i].answer) for i in idx] for name, preds in runs.items()}
        row: dict[str, Any] = {"subset": subset, "n": len(idx)}
        for name, values in correct.items():
            row[f"accuracy_{name}"] = sum(values) / len(values) if values else None
            row[f"no_answer_{name}"] = sum(1 for i in idx if runs[name][i]["prediction"] is None)
        if "steered" in correct:
            base, steered = correct["baseline"], correct["steered"]
            row["difference"] = (sum(steered) - sum(base)) / len(idx) if idx else None
            ci = bootstrap_diff(base, steered, iters, seed)
            row["difference_ci_low"], row["difference_ci_high"] = ci if ci else (None, None)
        rows.append(row)
    return rows


def evaluate_accuracy(ctx: Any) -> None:
    from models.loading import limit_threads_for_tiny_model
    from plugins.common.extraction import load
    from plugins.common.tables import rows_table
    from runner.atomic import write_csv, write_json, write_text

    p = ctx.params
    intervention = Intervention.from_params(p) if p["with_intervention"] else None
    directions = None
    if intervention is not None:
        preflight(intervention, p["model"], ctx.path(f"transformers/{p['model']}"), ctx.reads[-1], p.get("num_steps"))
    model, tokenizer = load(ctx.workspace, p, ctx.device_map)
    limit_threads_for_tiny_model(model)
    if intervention is not None:
        directions = read_directions(ctx.reads[-1], intervention.direction_layers)
    items, prompts = build_items(ctx, tokenizer)

    def predict() -> list[dict[str, Any]]:
        if p["method"] == "generate":
            return predict_generate(model, tokenizer, items, prompts, p["batch_size"], p["seed"], p["max_new_tokens"])
        return predict_loglik(model, tokenizer, items, prompts, p["batch_size"], p["seed"])

    runs = {"baseline": predict()}
    if intervention is not None:
        ctx.logger.info("intervention: %s", intervention.describe())
        with intervention.steer(model, directions):
            runs["steered"] = predict()
    rows = summarize(items, runs, p["bootstrap"], p["seed"])
    for name, preds in runs.items():
        missing = [(items[i], pred["response"]) for i, pred in enumerate(preds) if pred["prediction"] is None]
        if missing:
            ctx.logger.warning("%s: %d of %d answers unparseable (counted wrong); e.g. %s", name, len(missing),
                               len(preds), "; ".join(f"item {item.index}: {text!r}" for item, text in missing[:3]))
    per_item = [{"index": item.index, "label": item.label, "answer": item.answer,
                 **{f"{name}_{k}": v for name, preds in runs.items() for k, v in preds[i].items()}}
                for i, item in enumerate(items)]
    result = {"job": ctx.job, "run_id": ctx.run_id, "params": dict(p), "method": p["method"],
              "intervention": intervention.describe() if intervention else None, "subsets": rows, "items": per_item}
    write_json(ctx.writes[0], result)
    write_csv(ctx.writes[1], rows)
    table = rows_table(rows, f"accuracy {p['model']} ({p['method']})")
    write_text(ctx.writes[2], table)
    ctx.logger.info("\n%s", table)
