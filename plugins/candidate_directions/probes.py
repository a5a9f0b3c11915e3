"""Linear probes reasoning vs memorizing, per layer, with controls and bootstrap intervals.

For every layer (``embed``, 0, 1, ...) a scikit-learn logistic regression
(standardised features) is fitted on a stratified training split of the
saved hidden states and scored on the held-out split. Beside it:

* **shuffled labels** — the same probe on randomly permuted labels (same
  split sizes): what a probe reaches by memorising noise (~chance);
* **surface-matched** — a probe trained and tested on the control data set
  (reasoning and memorizing questions sharing templates and lengths), and
  the main probe applied to it unchanged (``transfer``): a probe that wins on
  wording alone falls to chance there.

Every accuracy comes with its n and a percentile bootstrap 95% interval over
the held-out rows. The probe's weight vector, mapped back to activation space
and oriented so that a positive projection means *reasoning*, is saved in
the directions format (``direction`` = w, ``bias``), with the class means and
the overall mean, so steering can use it like a candidate direction.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from plugins.common.stats import accuracy

from plugins.common.directions_format import complete, write_directions
from plugins.common.hidden_states import LABELS, REASONING, open_hidden_states


def split(y: np.ndarray, test_ratio: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train/test row indices."""
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(y))
    stratify = y if min(np.bincount(y, minlength=2)) >= 2 else None
    train, test = train_test_split(rows, test_size=test_ratio, random_state=seed, stratify=stratify)
    return np.sort(train), np.sort(test)


class Probe:
    """Standardise, then logistic regression; exposes the weight vector in activation space."""

    def __init__(self, C: float = 1.0, max_iter: int = 1000, seed: int = 0):
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        self.scaler = StandardScaler()
        self.model = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)

    def fit(self, x: np.ndarray, y: np.ndarray) -> Probe:
        self.model.fit(self.scaler.fit_transform(x), y)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict(self.scaler.transform(x))

    def reasoning_weights(self) -> tuple[np.ndarray, float]:
        """``(w, b)`` with ``w·h + b`` = the logit of *reasoning* (label 1), whatever sklearn's class order."""
        scale = self.scaler.scale_
        w = self.model.coef_[0] / scale
        b = float(self.model.intercept_[0] - np.dot(self.model.coef_[0], self.scaler.mean_ / scale))
        if self.model.classes_[1] != 1:  # coef_ scores classes_[1]; make it score reasoning
            w, b = -w, -b
        return w, b


def evaluate(probe: Probe, x: np.ndarray, y: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    stat = accuracy(probe.predict(x) == y, seed=seed, n_boot=n_boot)
    return {"accuracy": stat["acc"], "ci_low": stat["lo"], "ci_high": stat["hi"], "n": stat["n"]}


def fit_layer(x: np.ndarray, y: np.ndarray, y_shuffled: np.ndarray, train: np.ndarray, test: np.ndarray,
              params: dict[str, Any], control: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
              ) -> tuple[dict[str, Any], Probe]:
    """One layer: main probe, shuffled-label control and (optionally) the surface-matched controls."""
    C, max_iter, seed, n_boot = params["probe_C"], params["probe_max_iter"], params["seed"], params["bootstrap"]
    probe = Probe(C, max_iter, seed).fit(x[train], y[train])
    row = {"probe": evaluate(probe, x[test], y[test], n_boot, seed),
           "train_accuracy": float((probe.predict(x[train]) == y[train]).mean())}
    shuffled = Probe(C, max_iter, seed).fit(x[train], y_shuffled[train])
    row["shuffled"] = evaluate(shuffled, x[test], y_shuffled[test], n_boot, seed)
    if control is not None:
        xc, yc, ctrain, ctest = control
        row["surface_matched"] = evaluate(Probe(C, max_iter, seed).fit(xc[ctrain], yc[ctrain]), xc[ctest],
                                          yc[ctest], n_boot, seed)
        row["transfer"] = evaluate(probe, xc, yc, n_boot, seed)
    return row, probe


def _labels(labels: Sequence[str]) -> np.ndarray:
    unknown = sorted(set(labels) - set(LABELS))
    if unknown:
        raise ValueError(f"labels {unknown} are neither {LABELS[0]} nor {LABELS[1]}")
    return np.array([1 if label == REASONING else 0 for label in labels], dtype=np.int64)


def train_linear_probes(ctx: Any) -> None:
    """Sub-job: probes per layer from saved hidden states (and the control set's), tables, plot, directions."""
    import torch
    from rich.console import Console
    from rich.table import Table

    from plugins.candidate_directions.plots import plot_accuracy
    from runner.atomic import atomic_path, write_csv, write_json

    p = ctx.params
    main = open_hidden_states(ctx.reads[0])
    control = open_hidden_states(ctx.reads[1]) if len(ctx.reads) > 1 else None
    path_csv, path_json, path_png, path_st = ctx.writes[:4]
    y = _labels(main.labels)
    if min(np.bincount(y, minlength=2)) < 2:
        raise ValueError(f"{ctx.reads[0]}: probes need at least 2 prompts of each class, counts "
                         f"{dict(zip(('memorizing', 'reasoning'), np.bincount(y, minlength=2).tolist()))}")
    train, test = split(y, p["test_ratio"], p["seed"])
    y_shuffled = np.random.default_rng(p["seed"] + 1).permutation(y)
    control_split = None
    if control is not None:
        yc = _labels(control.labels)
        control_split = (yc, *split(yc, p["test_ratio"], p["seed"])) if min(np.bincount(yc, minlength=2)) >= 2 \
            else None
        if control_split is None:
            ctx.logger.warning("control set %s has fewer than 2 prompts of a class; surface-matched control skipped",
                               ctx.reads[1])
    rows: dict[str, Any] = ctx.checkpoint.load("rows", {})
    layers = [dict(e) for e in main.meta["layers"]]
    for entry in ctx.progress(layers, description=f"{ctx.job}: probes"):
        key = entry["key"]
        tensor_file = ctx.checkpoint.path(f"layer-{key}.safetensors")
        if str(key) in rows and tensor_file.exists():
            continue
        x = main.layer(key, torch.float64).numpy()
        control_data = None
        if control_split is not None:
            yc, ctrain, ctest = control_split
            control_data = (control.layer(key, torch.float64).numpy(), yc, ctrain, ctest)
        row, probe = fit_layer(x, y, y_shuffled, train, test, p, control_data)
        w, b = probe.reasoning_weights()
        direction = torch.from_numpy(w)
        overall = torch.from_numpy(x.mean(axis=0))
        tensors = {"reasoning_mean": torch.from_numpy(x[y == 1].mean(axis=0)),
                   "memorizing_mean": torch.from_numpy(x[y == 0].mean(axis=0)), "overall_mean": overall,
                   "direction": direction, **complete(direction, overall), "bias": torch.tensor([b])}
        from safetensors.torch import save_file

        with atomic_path(tensor_file) as tmp:
            save_file({k: v.to(torch.float32).contiguous() for k, v in tensors.items()}, str(tmp))
        rows[str(key)] = {"layer": key, "name": entry["name"], **row}
        ctx.checkpoint.save("rows", rows)

    from safetensors.torch import load_file

    per_layer = {e["key"]: load_file(str(ctx.checkpoint.path(f"layer-{e['key']}.safetensors"))) for e in layers}
    ordered = [rows[str(e["key"])] for e in layers]
    majority = float(max(np.mean(y[test]), 1 - np.mean(y[test])))
    meta = {"kind": "linear_probe", **{k: main.meta.get(k) for k in ("model", "model_dir", "model_type", "dataset",
                                                                    "mode", "num_steps", "dtype", "hidden_size")},
            "hidden_states": str(ctx.reads[0]), "control_hidden_states": str(ctx.reads[1]) if control else None,
            "counts": {"total": int(len(y)), "reasoning": int(y.sum()), "memorizing": int(len(y) - y.sum()),
                       "train": int(len(train)), "test": int(len(test))},
            "params": dict(p), "run_id": ctx.run_id}
    write_directions(path_st, per_layer, layers, meta)

    columns = ["probe", "shuffled"] + (["surface_matched", "transfer"] if control_split is not None else [])
    summary = {**meta, "majority_baseline": majority, "columns": columns, "layers": ordered,
               "plot": str(path_png), "directions": str(path_st)}
    write_json(path_json, summary)
    write_csv(path_csv, _csv_rows(ordered, columns))
    names = ["embed" if e["key"] == "embed" else str(e["key"]) for e in layers]
    series = {name.replace("_", "-"): ([r[name]["accuracy"] for r in ordered], [r[name]["ci_low"] for r in ordered],
                                       [r[name]["ci_high"] for r in ordered]) for name in columns}
    plot_accuracy(path_png, names, series, majority,
                  f"{meta['model']} · {meta['dataset']} · {meta['mode']}: linear probes "
                  f"(n_test={len(test)}, bootstrap {p['bootstrap']})")

    table = Table(title=f"linear probes: {meta['model']} / {meta['dataset']} / {meta['mode']} "
                        f"(held-out n={len(test)}; majority {majority:.2f})")
    table.add_column("layer")
    table.add_column("name")
    for name in columns:
        table.add_column(name.replace("_", "-") + " acc [95% CI]", justify="right")
    for r in ordered:
        table.add_row(str(r["layer"]), r["name"], *[f"{r[c]['accuracy']:.3f} [{r[c]['ci_low']:.2f}, "
                                                     f"{r[c]['ci_high']:.2f}] n={r[c]['n']}" for c in columns])
    Console(width=160).print(table)
    best = max(ordered, key=lambda r: r["probe"]["accuracy"])
    ctx.logger.info("best probe: layer %s (%s) accuracy %.3f [%.3f, %.3f] n=%d; table %s; plot %s",
                    best["layer"], best["name"], best["probe"]["accuracy"], best["probe"]["ci_low"],
                    best["probe"]["ci_high"], best["probe"]["n"], path_csv, path_png)


def _csv_rows(rows: list[dict[str, Any]], columns: list[str]) -> list[dict[str, Any]]:
    """One flat row per layer: accuracy, interval and n of each column."""
    flat = []
    for r in rows:
        line = {"layer": r["layer"], "name": r["name"], "train_accuracy": f"{r['train_accuracy']:.4f}"}
        for c in columns:
            line.update({f"{c}_accuracy": f"{r[c]['accuracy']:.4f}", f"{c}_ci_low": f"{r[c]['ci_low']:.4f}",
                         f"{c}_ci_high": f"{r[c]['ci_high']:.4f}", f"{c}_n": r[c]["n"]})
        flat.append(line)
    return flat
