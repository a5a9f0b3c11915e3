"""Make the run_experiment part of workspace.example: stimuli of the five tasks and two tiny models.

    nice -n 10 python scripts/make_task_demands_workspace.py [--data-only] [--workspace workspace.example]

Writes (committed; CI never reruns this):

* ``datasets/jennhu/lm-task-demands/{crt,blimp,dgl}/stimuli.csv`` in the
  published columns, ``digit_mat/all_problems.npz`` in the published form (a
  pickled dict of dicts, made here by numpy) and ``all_problems.json``, its
  import (:func:`plugins.run_experiment.stimuli.import_digit_mat_npz`);
* ``datasets/EleutherAI/lambada_openai/lambada_test_en.jsonl``;
* ``transformers/tiny-demands-s`` and ``tiny-demands-m``: Llama-style models
  of two sizes trained with :func:`models.training.train_tiny` on one corpus
  of the same domain (no evaluated item in it), each with two intermediate
  checkpoints under ``revisions/step<N>-tokens<T>K/``.

Seeds: stimuli 1, corpus 2, training 0. See workspace.example/README.md for
the measured losses and times.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from task_demands_data import (  # noqa: E402
    blimp_rows, crt_rows, dgl_rows, digit_mat_problems, lambada_lines, training_corpus,
)
from plugins.run_experiment.prompts import render_matrix  # noqa: E402
from plugins.run_experiment.stimuli import DEFAULT_FILES, import_digit_mat_npz  # noqa: E402

STEPS = 1500
CHECKPOINTS = (150, 500)
BATCH, SEQ = 16, 128
SIZES = {
    "tiny-demands-s": dict(hidden_size=48, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128),
    "tiny-demands-m": dict(hidden_size=96, num_hidden_layers=4, num_attention_heads=4, intermediate_size=256),
}


def write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def make_stimuli(ws: Path) -> set[str]:
    """Write every stimulus file; return the evaluated texts (kept out of the training corpus)."""
    import numpy as np

    rng = random.Random(1)
    crt = crt_rows(rng, 30)
    blimp = blimp_rows(rng, 25)
    dgl = dgl_rows(rng, 10)
    stories = lambada_lines(rng, 100)
    digits = digit_mat_problems(rng, 20)
    write_csv(ws / DEFAULT_FILES["crt"], crt)
    write_csv(ws / DEFAULT_FILES["blimp"], blimp)
    write_csv(ws / DEFAULT_FILES["dgl"], dgl)
    lambada = ws / DEFAULT_FILES["lambada"]
    lambada.parent.mkdir(parents=True, exist_ok=True)
    lambada.write_text("".join(json.dumps({"text": t}) + "\n" for t in stories))
    npz = ws / DEFAULT_FILES["digit_mat"].replace(".json", ".npz")
    npz.parent.mkdir(parents=True, exist_ok=True)
    published = {k: {"prob": np.array(v["prob"]), "answer_choices": np.array(v["answer_choices"]),
                     "correct_ind": np.array(v["correct_ind"]), "perm_invariant": v["perm_invariant"]}
                 for k, v in digits.items()}
    np.savez(npz, all_problems=np.array(published, dtype=object))
    import_digit_mat_npz(npz, ws / DEFAULT_FILES["digit_mat"])
    exclude = {r["question"] for r in crt} | {r["good_sentence"] for r in blimp}
    exclude |= {r["sentence_grammatical"] for r in dgl} | set(stories)
    exclude |= {render_matrix(g) for block in digits.values() for g in block["prob"]}
    return exclude


def train(ws: Path, exclude: set[str], only: list[str]) -> None:
    import torch
    from transformers import LlamaConfig

    from models.training import train_tokenizer, train_tiny

    torch.set_num_threads(1)
    corpus = training_corpus(random.Random(2), exclude, n_grammar=6000, n_stories=3000, n_matrices=3000,
                             n_crt=1500, meta_fraction=0.3)
    tok = train_tokenizer(corpus, vocab_size=768, kind="bpe")
    n_tokens = sum(len(tok(t, add_special_tokens=False)["input_ids"]) + 2 for t in corpus)
    print(f"corpus: {len(corpus)} texts, {n_tokens} tokens", flush=True)
    tokens_per_step = BATCH * SEQ
    for name, dims in SIZES.items():
        if only and name not in only:
            continue
        config = LlamaConfig(vocab_size=len(tok), max_position_embeddings=256, tie_word_embeddings=True,
                             num_key_value_heads=dims["num_attention_heads"], **dims)
        revisions = {s: f"revisions/step{s}-tokens{s * tokens_per_step // 1000}K" for s in CHECKPOINTS}
        out = train_tiny(config, corpus, steps=STEPS, seed=0, out_dir=ws / "transformers" / name, tokenizer=tok,
                         lr=3e-3, batch_size=BATCH, seq_len=SEQ, warmup_steps=50, num_threads=1, log_every=50,
                         overwrite=True, checkpoints=revisions)
        log = json.loads((out / "training_log.json").read_text())
        print(f"{name}: {sum(p.numel() for p in torch.nn.Module.parameters(_load(out)))} params, "
              f"{log['seconds']:.0f} s, loss {log['losses'][0]['loss']:.3f} -> {log['losses'][-1]['loss']:.3f}",
              flush=True)


def _load(path: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", default=str(Path(__file__).resolve().parent.parent / "workspace.example"))
    parser.add_argument("--data-only", action="store_true", help="write the stimuli, train nothing")
    parser.add_argument("--only", nargs="*", default=[], help="train only these models")
    args = parser.parse_args()
    ws = Path(args.workspace)
    exclude = make_stimuli(ws)
    if not args.data_only:
        train(ws, exclude, args.only)


if __name__ == "__main__":
    main()
