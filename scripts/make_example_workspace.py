#!/usr/bin/env python
"""Make the LiReFs part of ``workspace.example/``: data with real signal and two tiny models.

Run once by a maintainer (not in CI; the outputs are committed)::

    python scripts/make_example_workspace.py [--seed 0] [--workspace workspace.example] [--only data|models|check]

Writes, deterministically from ``--seed``:

* ``datasets/lirefs/mmlu-pro-3000samples.json`` — 240 questions about a small
  generated world (120 memorizing, 120 reasoning) in the LiReFs schema;
* ``datasets/lirefs/mmlu-pro/`` — a ``DatasetDict`` with a ``validation``
  split (3 few-shot examples per category, with ``cot_content``);
* ``datasets/lirefs/surface-matched.json`` — the control set (160 questions,
  80 pairs sharing a context sentence);
* ``transformers/tiny-llama-3-8b/`` and ``transformers/tiny-huginn-0125/`` —
  models trained briefly on texts of that world (``models.training``; Huginn
  with the small loop below, see ``train_huginn``);
* ``README.md`` — how each file was made, with the measured numbers;

then runs the probe sanity check (``scripts/check_example_signal.py``).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import lirefs_world as lw  # noqa: E402

LLAMA_DIR = "transformers/tiny-llama-3-8b"
HUGINN_DIR = "transformers/tiny-huginn-0125"
N_EACH = 120  # memorizing and reasoning questions in the main file
N_PAIRS = 80  # surface-matched pairs
FEW_SHOT_PER_CATEGORY = 3
TRAIN_POOL_EACH = 900  # training questions of each kind (disjoint from the published ones)
TRAIN_SM_PAIRS = 300

CATEGORY_MAKERS = {
    "geography": [lw.mem_capital, lw.mem_towers, lw.reas_road],
    "economics": [lw.mem_currency, lw.reas_price],
    "history": [lw.mem_founded, lw.reas_years],
    "biology": [lw.mem_colour],
    "math": [lw.reas_arith, lw.reas_compare],
    "physics": [lw.reas_motion],
}

LLAMA_CONFIG = dict(hidden_size=128, intermediate_size=320, num_hidden_layers=4, num_attention_heads=4,
                    num_key_value_heads=4, max_position_embeddings=1024, tie_word_embeddings=True,
                    rope_theta=10000.0)
HUGINN_CONFIG = dict(n_embd=128, n_heads=4, intermediate_size=320, n_layers_in_prelude=1,
                     n_layers_in_recurrent_block=2, n_layers_in_coda=1, mean_recurrence=4, block_size=1024,
                     mean_backprop_depth=4)
VOCAB_SIZE = 1024
SEQ_LEN = 160
BATCH = 16
LR = 3e-3


# --------------------------------------------------------------------------- data


def _write_json(path: Path, data: Any) -> None:
    from runner.atomic import write_text

    write_text(path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")


def make_data(ws: Path, seed: int) -> dict[str, Any]:
    """Write the three data files; return what the README and the corpus need."""
    from datasets import Dataset, DatasetDict

    from runner.atomic import atomic_path

    world = lw.make_world(seed)
    rng = random.Random(seed + 1)
    main = lw.make_questions(rng, world, N_EACH)
    main_entries = [lw.to_entry(q, i, rng) for i, q in enumerate(main)]
    taken = {q.question for q in main}

    few_shot_rows = []
    for category, makers in CATEGORY_MAKERS.items():
        made = 0
        while made < FEW_SHOT_PER_CATEGORY:
            q = makers[made % len(makers)](rng, world)
            if q.question in taken:
                continue
            taken.add(q.question)
            row = lw.to_entry(q, 10_000 + len(few_shot_rows), rng, src=f"{lw.SRC}-validation")
            row.pop("memory_reason_score")
            row["cot_content"] = lw.cot_content(q)
            few_shot_rows.append(row)
            made += 1

    sm = lw.make_surface_matched(rng, world, N_PAIRS)
    sm_entries = [lw.to_entry(q, 20_000 + i, rng, src=f"{lw.SRC}-surface-matched") for i, q in enumerate(sm)]
    taken |= {q.question for q in sm}

    lirefs = ws / "datasets" / "lirefs"
    _write_json(lirefs / "mmlu-pro-3000samples.json", main_entries)
    _write_json(lirefs / "surface-matched.json", sm_entries)
    with atomic_path(lirefs / "mmlu-pro", directory=True) as tmp:
        DatasetDict({"validation": Dataset.from_list(few_shot_rows)}).save_to_disk(str(tmp))

    # Training questions: the same generators, none of the published texts.
    train_rng = random.Random(seed + 2)
    train_q = lw.make_questions(train_rng, world, TRAIN_POOL_EACH, exclude=taken, unique_text=False)
    train_sm = [q for q in lw.make_surface_matched(train_rng, world, TRAIN_SM_PAIRS) if q.question not in taken]
    return {"world": world, "main": main_entries, "few_shot": few_shot_rows, "surface_matched": sm_entries,
            "train_questions": train_q + train_sm}


def training_texts(data: dict[str, Any], seed: int) -> list[str]:
    """The corpus both models train on: facts, worked arithmetic, prompts with answers."""
    from plugins.common.prompts import build_prompt

    rng = random.Random(seed + 3)
    world = data["world"]
    texts: list[str] = []
    facts = world.facts()
    for _ in range(6):  # each fact stated several times, in shuffled orders
        block = facts[:]
        rng.shuffle(block)
        texts += [" ".join(block[i:i + 4]) for i in range(0, len(block), 4)]
    for _ in range(1500):  # worked arithmetic
        a, b, c = rng.randint(2, 70), rng.randint(2, 70), rng.randint(2, 12)
        texts.append(rng.choice([
            f"{a} + {b} = {a + b}.",
            f"{a} + {b} - {c} = {a + b - c}, because {a} + {b} = {a + b} and {a + b} - {c} = {a + b - c}.",
            f"{c} times {b % 10 + 2} is {c * (b % 10 + 2)}.",
            f"{max(a, b)} - {min(a, b)} = {max(a, b) - min(a, b)}.",
        ]))

    class _Item:  # build_prompt needs question/options/answer attributes
        def __init__(self, q: lw.Question):
            self.question, self.options, self.answer = q.question, q.options, lw.LETTERS[q.answer_index]
            self.cot_content = lw.cot_content(q)

    for q in data["train_questions"]:
        item = _Item(q)
        letter = item.answer
        for template in ("extraction", "extraction_llama"):
            texts.append(build_prompt(item, template) + f"The answer is {q.answer_text}.")
        template = rng.choice(["evaluation", "evaluation_llama"])
        if rng.random() < 0.5:
            texts.append(build_prompt(item, template) + f"The answer is ({letter}).")
        else:
            texts.append(build_prompt(item, template, few_shot=[], cot=False) + f"Let's think step by step. "
                         f"{q.steps} The answer is ({letter}).")
    rng.shuffle(texts)
    return texts


# --------------------------------------------------------------------------- models


def train_llama(ws: Path, texts: list[str], tokenizer: Any, seed: int, steps: int, threads: int = 2) -> dict[str, Any]:
    from transformers import LlamaConfig

    from models.training import train_tiny

    config = LlamaConfig(vocab_size=len(tokenizer), **LLAMA_CONFIG)
    out = train_tiny(config, texts, steps=steps, seed=seed, out_dir=ws / LLAMA_DIR, tokenizer=tokenizer, lr=LR,
                     batch_size=BATCH, seq_len=SEQ_LEN, pack=True, warmup_steps=30, num_threads=threads,
                     log_every=25, overwrite=True)
    return json.loads((out / "training_log.json").read_text())


def train_huginn(ws: Path, texts: list[str], tokenizer: Any, seed: int, steps: int,
                 threads: int = 2) -> dict[str, Any]:
    """The Huginn loop: ``train_tiny`` cannot train Huginn as is.

    Two reasons: ``train_tiny`` calls ``model(..., labels=input_ids)``, while
    Huginn's labels are aligned with the logits as published (the loss needs
    ``shift_labels=True``), and it offers no way to pass ``num_steps``.
    This loop mirrors ``train_tiny`` (same packed windows, AdamW, warmup +
    cosine to 10 %, clipping 1.0, atomic save with ``training_log.json``)
    and draws the recurrence per step from 1..2·mean_recurrence, so the
    model works at several depths (its default is ``mean_recurrence``).
    """
    import torch

    import models.huginn  # noqa: F401  (registers huginn_raven)
    from models.huginn import HuginnConfig
    from models.training import atomic_directory

    config = HuginnConfig(vocab_size=len(tokenizer), padded_vocab_size=len(tokenizer),
                          bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                          pad_token_id=tokenizer.pad_token_id, **HUGINN_CONFIG)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(seed)
        model = models.huginn.HuginnForCausalLM(config)
        model.train()
        gen = torch.Generator().manual_seed(seed)
        step_rng = random.Random(seed)
        stream = []
        for t in texts:
            stream += [tokenizer.bos_token_id] + tokenizer(t, add_special_tokens=False)["input_ids"] + \
                [tokenizer.eos_token_id]
        stream_t = torch.tensor(stream, dtype=torch.long)
        decay, no_decay = [], []
        for name, p in model.named_parameters():
            (no_decay if p.dim() < 2 or "norm" in name.lower() else decay).append(p)
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.0}, {"params": no_decay, "weight_decay": 0.0}],
                                lr=LR)
        warmup = 30
        losses = []
        start = time.perf_counter()
        for step in range(steps):
            lr = LR * (step + 1) / warmup if step < warmup else \
                LR * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup))))
            for group in opt.param_groups:
                group["lr"] = lr
            offs = torch.randint(0, stream_t.numel() - SEQ_LEN, (BATCH,), generator=gen)
            batch = torch.stack([stream_t[o:o + SEQ_LEN] for o in offs.tolist()])
            num_steps = step_rng.randint(1, 2 * config.mean_recurrence)
            out = model(input_ids=batch, labels=batch, shift_labels=True, num_steps=num_steps, init_scale=0.0)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            if step % 25 == 0 or step == steps - 1:
                losses.append({"step": step, "loss": out.loss.item(), "num_steps": num_steps})
                print(f"huginn step {step + 1}/{steps} loss {out.loss.item():.4f} (r={num_steps})", flush=True)
        seconds = time.perf_counter() - start
        model.eval()
        with atomic_directory(ws / HUGINN_DIR, overwrite=True) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            record = {"seed": seed, "steps": steps, "lr": LR, "batch_size": BATCH, "seq_len": SEQ_LEN, "pack": True,
                      "num_steps": f"uniform 1..{2 * config.mean_recurrence} per step", "init_scale": 0.0,
                      "n_examples": len(texts), "num_threads": torch.get_num_threads(),
                      "seconds": round(seconds, 3), "losses": losses}
            (tmp / "training_log.json").write_text(json.dumps(record, indent=2) + "\n")
    finally:
        torch.set_num_threads(old_threads)
    return record


def held_out_loss(ws: Path, model_dir: str, texts: list[str], seed: int, **forward: Any) -> float:
    """Mean next-token loss on held-out evaluation prompts (the published questions, answered)."""
    import torch

    from models.loading import load_model

    model, tok = load_model(ws / model_dir, dtype="float32")
    total, count = 0.0, 0
    with torch.no_grad():
        for t in texts:
            ids = torch.tensor([[tok.bos_token_id] + tok(t, add_special_tokens=False)["input_ids"]])
            logits = model(input_ids=ids, **forward).logits
            loss = torch.nn.functional.cross_entropy(logits[0, :-1], ids[0, 1:], reduction="sum")
            total += loss.item()
            count += ids.shape[1] - 1
    return total / count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workspace", default=str(REPO / "workspace.example"))
    parser.add_argument("--llama_steps", type=int, default=600)
    parser.add_argument("--huginn_steps", type=int, default=350)
    parser.add_argument("--only", choices=["data", "models", "llama", "huginn"], default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    ws = Path(args.workspace)
    report_path = Path("/tmp/make_example_workspace_report.json")

    data = make_data(ws, args.seed)
    print(f"data: {len(data['main'])} main, {len(data['few_shot'])} few-shot, "
          f"{len(data['surface_matched'])} surface-matched, {len(data['train_questions'])} training questions")
    if args.only == "data":
        return
    report: dict[str, Any] = {}
    if True:
        from models.training import train_tokenizer
        from plugins.common.prompts import build_prompt

        texts = training_texts(data, args.seed)
        tokenizer = train_tokenizer(texts, vocab_size=VOCAB_SIZE, kind="bpe")
        print(f"corpus: {len(texts)} texts, {sum(len(tokenizer(t)['input_ids']) for t in texts)} tokens; "
              f"vocab {len(tokenizer)}")
    if args.only in ("models", "llama", None):
        train_llama(ws, texts, tokenizer, args.seed, args.llama_steps, args.threads)
    if args.only in ("models", "huginn", None):
        train_huginn(ws, texts, tokenizer, args.seed, args.huginn_steps, args.threads)
    if (ws / LLAMA_DIR / "training_log.json").exists() and (ws / HUGINN_DIR / "training_log.json").exists():
        llama_log = json.loads((ws / LLAMA_DIR / "training_log.json").read_text())
        huginn_log = json.loads((ws / HUGINN_DIR / "training_log.json").read_text())

        class _It:
            def __init__(self, e: dict[str, Any]):
                self.__dict__.update(e)

        held = [build_prompt(_It(e), "evaluation") + f"The answer is ({e['answer']})." for e in data["main"]]
        report = {
            "seed": args.seed,
            "corpus_texts": len(texts),
            "corpus_tokens": sum(len(tokenizer(t)["input_ids"]) for t in texts),
            "vocab": len(tokenizer),
            "llama": {k: llama_log[k] for k in ("steps", "seconds", "lr", "batch_size", "seq_len")}
            | {"final_loss": llama_log["losses"][-1]["loss"],
               "held_out_loss": held_out_loss(ws, LLAMA_DIR, held, args.seed)},
            "huginn": {k: huginn_log[k] for k in ("steps", "seconds", "lr", "batch_size", "seq_len", "num_steps")}
            | {"final_loss": huginn_log["losses"][-1]["loss"],
               "held_out_loss": held_out_loss(ws, HUGINN_DIR, held, args.seed, num_steps=4, init_scale=0.0)},
        }
        _write_json(report_path, report)
        print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
