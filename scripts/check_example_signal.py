#!/usr/bin/env python
"""Sanity check of the example workspace: is reasoning vs memorizing linearly decodable?

Takes last-token hidden states (``models.capture``, reduction ``"last"``) of
every layer on the seed's extraction prompts, then per layer fits a
scikit-learn logistic regression on a stratified 75 % split and reports the
accuracy on the held-out 25 %, beside the same probe trained on shuffled
labels. Done for the main file and the surface-matched control. This is a
check of the committed data and models, not the probe plugin::

    python scripts/check_example_signal.py [--workspace workspace.example] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MODELS = {"tiny-llama-3-8b": {}, "tiny-huginn-0125": {"num_steps": 4, "init_scale": 0.0}}


def hidden_states(model: Any, tok: Any, prompts: list[str], forward: dict[str, Any], batch: int = 16):
    import torch

    from models.capture import capture
    from models.layers import get_layers

    keys = ["embed"] + [layer.index for layer in get_layers(model)]
    tok.padding_side = "left"
    rows = []
    with torch.no_grad():
        for i in range(0, len(prompts), batch):
            enc = tok(prompts[i:i + batch], return_tensors="pt", padding=True)
            with capture(model, keys, reduction="last", attention_mask=enc["attention_mask"]) as cap:
                model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], **forward)
            rows.append(cap.stack().float())  # [1 + layers, batch, hidden]
    return torch.cat(rows, dim=1).numpy()


def probe(x, y, seed: int = 0) -> tuple[float, float]:
    """Held-out accuracy of a logistic-regression probe, and the mean over 10 probes trained on shuffled labels."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, random_state=seed, stratify=y)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    acc = clf.fit(xtr, ytr).score(xte, yte)
    rng = np.random.default_rng(seed)
    acc_shuffled = np.mean([clf.fit(xtr, rng.permutation(ytr)).score(xte, yte) for _ in range(10)])
    return float(acc), float(acc_shuffled)


def bag_of_words(prompts: list[str], y) -> float:
    """Held-out accuracy of the same probe on word counts of the prompt: the wording-only baseline."""
    from sklearn.feature_extraction.text import CountVectorizer

    x = CountVectorizer(token_pattern=r"[A-Za-z]+").fit_transform(prompts).toarray()
    return probe(x, y)[0]


def run(ws: Path) -> dict[str, Any]:
    import numpy as np

    from models.layers import get_layers
    from models.loading import load_model
    from plugins.common.lirefs import LIREFS_FILE, SURFACE_MATCHED_FILE, load_lirefs
    from plugins.common.prompts import build_prompt, template_for

    results: dict[str, Any] = {}
    for name, forward in MODELS.items():
        model, tok = load_model(ws / "transformers" / name, dtype="float32")
        names = ["embed"] + [layer.name for layer in get_layers(model)]
        results[name] = {}
        for label, rel in (("main", LIREFS_FILE), ("surface_matched", SURFACE_MATCHED_FILE)):
            items = load_lirefs(ws / rel)
            template = template_for("extraction", name)
            prompts = [build_prompt(item, template) for item in items]
            y = np.array([item.label == "reasoning" for item in items], dtype=int)
            x = hidden_states(model, tok, prompts, forward)
            rows = []
            for i, layer_name in enumerate(names):
                acc, acc_shuffled = probe(x[i], y)
                rows.append({"layer": layer_name, "accuracy": acc, "shuffled": acc_shuffled})
            results[name][label] = {"n": len(items), "n_test": int(round(len(items) * 0.25)), "layers": rows,
                                    "bag_of_words": bag_of_words(prompts, y)}
    return results


def table(results: dict[str, Any]) -> str:
    lines = []
    for model, sets in results.items():
        for label, res in sets.items():
            lines.append(f"{model} / {label} (n={res['n']}, held-out {res['n_test']}; "
                         f"bag-of-words baseline {res['bag_of_words']:.3f}):")
            lines.append("  layer          acc   shuffled")
            for row in res["layers"]:
                lines.append(f"  {row['layer']:<13} {row['accuracy']:.3f}  {row['shuffled']:.3f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default=str(REPO / "workspace.example"))
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    results = run(Path(args.workspace))
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
