"""Make the icm_label example: arithmetic claims to label, and models that never saw them labelled.

    nice -n 10 python scripts/make_icm_example.py                # data + tiny-icm-arith (~8 CPU-minutes, 1 thread)
    python scripts/make_icm_example.py --data-only               # only the data files
    nice -n 10 python scripts/make_icm_example.py --recipe relations --hidden 128 --layers 4   # ~30 CPU-minutes
    nice -n 10 python scripts/make_icm_example.py --recipe functions --hidden 96 --layers 6    # (not committed)
    nice -n 10 python scripts/make_icm_example.py --recipe lookup --steps 9000               # ~100 CPU-minutes
    nice -n 10 python scripts/make_icm_example.py --recipe sums --steps 4000 --weight-decay 1  # ~42 CPU-minutes

Writes (committed; CI never reruns this):

* ``workspace.example/datasets/icm/arithmetic/train_gsm8k.json`` and ``test_gsm8k.json`` —
  GSM8K-verification-style claims ``a + b = c.`` (4 candidate solutions per question, one or
  two of them right) in the published ``train_*.json`` format, gold labels for reporting;
* ``workspace.example/transformers/tiny-icm-arith`` (recipe ``facts``) — a 4-layer Llama-style
  model pretrained with ``models.training`` on true sums of single digits in five phrasings; the
  words ``True`` and ``False`` never occur in its training text;
* ``workspace.example/transformers/tiny-icm-arith-sums-128x4-wd1`` (recipe ``sums``, 4000 steps,
  weight decay 1) — the example job's model: it also saw labelled claims about five other relations
  and about the 63 sums the claim files never ask, so every claim ICM labels is new to it.

The other recipes (``plugins.icm_label.arithmetic.CORPUS_RECIPES``) add facts of other relations
and many-shot *labelled* claims of some of them in ICM's prompt layout, so that a model learns
what ``True``/``False`` mean — never about a sum the claim files ask; they write
``tiny-icm-arith-<recipe>-<hidden>x<layers>[-wd<weight decay>]``
(512-token windows, batch 8, 3000 steps unless ``--steps``). What each gave is in docs/plugins/icm_label.md.
Seed, steps and losses go to each model's ``training_log.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from plugins.icm_label.arithmetic import (  # noqa: E402
    CORPUS_RECIPES, EXAMPLE_SPLIT, fact_texts, labelled_relations_corpus, split_questions, verification_claims,
)

SEED = 0
DATA = ROOT / "workspace.example" / "datasets" / "icm" / "arithmetic"
MODELS = ROOT / "workspace.example" / "transformers"


def make_data() -> None:
    rng = random.Random(SEED)
    train_q, test_q = split_questions(rng, *EXAMPLE_SPLIT)
    DATA.mkdir(parents=True, exist_ok=True)
    for name, questions, start in (("train_gsm8k.json", train_q, 0), ("test_gsm8k.json", test_q, 1000)):
        claims = verification_claims(questions, rng, start_id=start)
        (DATA / name).write_text(json.dumps(claims, indent=1) + "\n")
        print(f"{DATA / name}: {len(claims)} claims, {sum(c['label'] for c in claims)} true")


def train(out: Path, texts: list[str], *, hidden: int, layers: int, steps: int, seq_len: int, batch_size: int,
          warmup_steps: int, log_every: int = 50, weight_decay: float = 0.0) -> None:
    """A Llama-style model with a byte-level BPE tokenizer, both trained on ``texts`` (1 thread)."""
    from transformers import LlamaConfig

    from models.training import train_tiny, train_tokenizer

    tokenizer = train_tokenizer(texts, vocab_size=400, kind="bpe", model_max_length=2048)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 5 // 2,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=2048, tie_word_embeddings=True)
    train_tiny(config, texts, steps=steps, seed=SEED, out_dir=out, tokenizer=tokenizer, lr=3e-3,
               batch_size=batch_size, seq_len=seq_len, warmup_steps=warmup_steps, num_threads=1, log_every=log_every,
               weight_decay=weight_decay, overwrite=True)
    log = json.loads((out / "training_log.json").read_text())
    print(f"{out}: {len(texts)} texts, {steps} steps, {log['seconds']:.0f}s, "
          f"loss {log['losses'][0]['loss']:.3f} -> {log['losses'][-1]['loss']:.3f}")


def make_model(recipe: str, hidden: int, layers: int, steps: int | None, weight_decay: float = 0.0) -> None:
    if recipe == "facts":
        texts = fact_texts(random.Random(SEED))
        assert not any("True" in t or "False" in t for t in texts), "the pretraining text must never label a claim"
        train(MODELS / "tiny-icm-arith", texts, hidden=hidden, layers=layers, steps=steps or 600, seq_len=128,
              batch_size=16, warmup_steps=30, log_every=25)  # as committed
        return
    texts = labelled_relations_corpus(random.Random(SEED), recipe)
    name = f"tiny-icm-arith-{recipe}-{hidden}x{layers}" + (f"-wd{weight_decay:g}" if weight_decay else "")
    train(MODELS / name, texts, hidden=hidden, layers=layers, steps=steps or 3000, seq_len=512, batch_size=8,
          warmup_steps=100, weight_decay=weight_decay)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-only", action="store_true")
    parser.add_argument("--recipe", choices=["facts", *CORPUS_RECIPES], default="facts")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: 600 for facts, else 3000)")
    parser.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay (default 0)")
    args = parser.parse_args()
    make_data()
    if not args.data_only:
        make_model(args.recipe, args.hidden, args.layers, args.steps, args.weight_decay)


if __name__ == "__main__":
    main()
