"""The five task evaluations: items in, one result row per item out (imports torch via models.scoring).

Every log-probability goes through :mod:`models.scoring` (boundary between
prompt and option, BOS and padding decided there once). Each function takes
a chunk of items, so the sub-job can checkpoint between chunks.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from models.scoring import (
    generate_greedy, next_token_logprobs, score_choices_detailed, score_continuations_detailed,
)
from plugins.run_experiment.config import Settings
from plugins.run_experiment.prompts import (
    CRT_PROMPT, GRAMMAR_META, GRAMMAR_OPTIONS, LAMBADA_META, cell_matches, clean_response, label_response,
    money_canonical, parse_cell, render_choice, render_matrix,
)

TOP_K = 100


def _argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=lambda i: values[i])


def digit_mat(model: Any, tok: Any, items: Sequence[dict], s: Settings) -> list[dict[str, Any]]:
    """Free generation after ``[`` (parsed up to ``]``) vs 8-way forced choice by summed log-prob."""
    prompts = [render_matrix(it["prob"]) for it in items]
    gens = generate_greedy(model, tok, prompts, s.max_new_tokens, batch_size=s.batch_size, stop="]")
    options = [[render_choice(c) for c in it["answer_choices"]] for it in items]
    scores = score_choices_detailed(model, tok, prompts, options, batch_size=s.batch_size)
    rows = []
    for it, prompt, gen, opts, sc in zip(items, prompts, gens, options, scores):
        answer = it["answer_choices"][it["correct_ind"]]
        pred = parse_cell(gen.text)
        sums, means = [x.sum for x in sc], [x.mean for x in sc]
        best, best_mean = _argmax(sums), _argmax(means)
        rows.append({
            "item_id": it["item_id"], "problem_type": it["problem_type"], "problem_ind": it["problem_ind"],
            "perm_invariant": it["perm_invariant"], "prompt": prompt, "correct_answer": opts[it["correct_ind"]],
            "generated_response": gen.text, "generated_response_sum_logprob": gen.sum_logprob,
            "generated_response_pred": "" if pred is None else " ".join(map(str, pred)),
            "generated_response_correct": cell_matches(pred, answer, it["perm_invariant"]),
            "mc_options": json.dumps(opts), "mc_answer_logprobs": json.dumps(sums),
            "mc_answer_mean_logprobs": json.dumps(means), "mc_answer_n_tokens": json.dumps([x.n_tokens for x in sc]),
            "mc_response_index": best, "mc_response": opts[best], "mc_response_sum_logprob": sums[best],
            "mc_response_correct": best == it["correct_ind"],
            "mc_response_mean_index": best_mean, "mc_response_mean_correct": best_mean == it["correct_ind"],
        })
    return rows


def crt_options(item: dict, condition: str) -> dict[str, str]:
    """Forced-choice options by label; crt1 adds each amount written the usual way (``_alt``)."""
    opts = {"correct": item["correct"], "intuitive": item["intuitive"]}
    if condition == "crt1":
        opts["total_cost"] = "$" + item["total_cost"].lstrip("$")
        opts["more"] = "$" + item["more"].lstrip("$")
        for label in list(opts):
            alt = money_canonical(opts[label])
            if alt != opts[label]:
                opts[f"{label}_alt"] = alt
    elif condition == "crt3":
        opts["t"] = item["t"]
    return opts


def _base(label: str) -> str:
    return label.removesuffix("_alt")


def crt(model: Any, tok: Any, items: Sequence[dict], s: Settings) -> list[dict[str, Any]]:
    """Generation (first sentence, labelled by the number it names) vs forced choice by mean log-prob."""
    prompts = [CRT_PROMPT.format(question=it["question"]) for it in items]
    gens = generate_greedy(model, tok, prompts, s.max_new_tokens, batch_size=s.batch_size)
    option_maps = [crt_options(it, s.condition) for it in items]
    scores = score_choices_detailed(model, tok, prompts, [[" " + o for o in m.values()] for m in option_maps],
                                    batch_size=s.batch_size)
    rows = []
    for it, prompt, gen, opts, sc in zip(items, prompts, gens, option_maps, scores):
        labels = list(opts)
        means, sums = [x.mean for x in sc], [x.sum for x in sc]
        best, best_sum = _argmax(means), _argmax(sums)
        clean = clean_response(gen.text)
        label = _base(label_response(clean, opts))
        rows.append({
            "condition": s.condition, "item_id": it["item_id"], "question": it["question"], "prompt": prompt,
            "generated_response": gen.text, "generated_response_sum_logprob": gen.sum_logprob,
            "generated_response_clean": clean, "generated_response_label": label,
            "generated_response_correct": label == "correct", "generated_response_intuitive": label == "intuitive",
            "mc_answer_labels": json.dumps(labels), "mc_options": json.dumps(list(opts.values())),
            "mc_answer_mean_logprobs": json.dumps(means), "mc_answer_sum_logprobs": json.dumps(sums),
            "mc_correct_logprob": means[labels.index("correct")],
            "mc_intuitive_logprob": means[labels.index("intuitive")],
            "mc_response_label": _base(labels[best]), "mc_response_mean_logprob": means[best],
            "mc_response_correct": _base(labels[best]) == "correct",
            "mc_response_intuitive": _base(labels[best]) == "intuitive",
            "mc_sum_response_label": _base(labels[best_sum]),
            "mc_sum_response_correct": _base(labels[best_sum]) == "correct",
        })
    return rows


def kl_and_rank(direct: Any, meta: Any) -> dict[str, float]:
    """KL(direct ‖ meta) summed over the vocabulary (one distribution, not divided by its size) and
    Spearman correlations of the two log-prob vectors over the vocabulary and the direct top-100."""
    import torch
    from scipy.stats import spearmanr

    p = direct.exp()
    kl = float((p * (direct - meta)).sum())
    r_all, p_all = spearmanr(direct.numpy(), meta.numpy())
    top = torch.topk(direct, min(TOP_K, direct.numel())).indices
    r_top, p_top = spearmanr(direct[top].numpy(), meta[top].numpy())
    return {"kl_divergence": kl, "spearman_r_all": float(r_all), "spearman_p_all": float(p_all),
            "spearman_r_top100": float(r_top), "spearman_p_top100": float(p_top)}


def lambada(model: Any, tok: Any, items: Sequence[dict], s: Settings) -> list[dict[str, Any]]:
    """log P(final word | passage) directly and inside the metalinguistic prompt; next-token KL and ranks."""
    direct_ctx = [it["prefix"] for it in items]
    meta_ctx = [LAMBADA_META.format(prefix=it["prefix"]) for it in items]
    words = [" " + it["final_word"] for it in items]
    scored = score_continuations_detailed(model, tok, direct_ctx + meta_ctx, words + words, batch_size=s.batch_size)
    direct, meta = scored[: len(items)], scored[len(items):]
    dists = next_token_logprobs(model, tok, direct_ctx + meta_ctx, batch_size=s.batch_size)
    rows = []
    for i, it in enumerate(items):
        rows.append({
            "item_id": it["item_id"], "prefix": it["prefix"], "final_word": it["final_word"],
            "direct_logprob": direct[i].sum, "meta_logprob": meta[i].sum, "n_tokens": direct[i].n_tokens,
            "direct_greedy": direct[i].is_greedy, "meta_greedy": meta[i].is_greedy,
            **kl_and_rank(dists[i], dists[len(items) + i]),
        })
    return rows


def grammar_pair(item: dict, task: str) -> tuple[str, str]:
    """(good, bad) sentence; DGL's are published without the final period, which is added as in the paper."""
    if task == "blimp":
        return item["good_sentence"], item["bad_sentence"]
    return item["sentence_grammatical"].rstrip() + ".", item["sentence_ungrammatical"].rstrip() + "."


def grammaticality(model: Any, tok: Any, items: Sequence[dict], s: Settings) -> list[dict[str, Any]]:
    """Direct: log P(good) > log P(bad). Metalinguistic: P(" 1") vs P(" 2") with the good sentence first and second."""
    pairs = [grammar_pair(it, s.task) for it in items]
    sentences = [x for pair in pairs for x in pair]
    direct = score_continuations_detailed(model, tok, [""] * len(sentences), sentences, batch_size=s.batch_size)
    prompts = []
    for good, bad in pairs:
        prompts += [GRAMMAR_META.format(s1=good, s2=bad), GRAMMAR_META.format(s1=bad, s2=good)]
    meta = score_choices_detailed(model, tok, prompts, [list(GRAMMAR_OPTIONS)] * len(prompts),
                                  batch_size=s.batch_size)
    rows = []
    for i, (it, (good, bad)) in enumerate(zip(items, pairs)):
        g, b = direct[2 * i], direct[2 * i + 1]
        (g1, g2), (b1, b2) = [x.sum for x in meta[2 * i]], [x.sum for x in meta[2 * i + 1]]
        good_first, bad_first = g1 > g2, b2 > b1
        row = {"item_id": it["item_id"]}
        row.update({k: it[k] for k in ("category", "phenomenon", "original_condition") if k in it})
        row.update({
            "good_sentence": good, "bad_sentence": bad,
            "direct_good_logprob": g.sum, "direct_bad_logprob": b.sum, "direct_correct": g.sum > b.sum,
            "direct_mean_correct": g.mean > b.mean,
            "meta_good_first_1": g1, "meta_good_first_2": g2, "meta_bad_first_1": b1, "meta_bad_first_2": b2,
            "meta_good_correct": good_first, "meta_bad_correct": bad_first,
            "meta_1_correct": g1 > b1, "meta_2_correct": b2 > g2,
            "meta_correct": good_first and bad_first, "meta_correct_lenient": good_first or bad_first,
            "meta_avg": (int(good_first) + int(bad_first)) / 2, "meta_says_1_both": g1 > g2 and b1 > b2,
        })
        rows.append(row)
    return rows


EVALUATORS = {"digit_mat": digit_mat, "crt": crt, "lambada": lambada, "blimp": grammaticality,
              "dgl": grammaticality}
