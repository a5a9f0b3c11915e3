"""The seed's prompt formats as named, switchable templates, and its answer parser.

The seed builds two kinds of prompt from the same LiReFs item (see
docs/data.md for the exact strings):

* **extraction** (``save_hidden_states``, hence candidate directions and
  probes): the bare question — no options, no few-shot examples, no
  chain-of-thought phrase — as ``"Q: {question}\\n\\nA: "``;
* **evaluation** (``evaluate_accuracy_reasoning_memorizing``): the question
  with lettered options (``"Options are:\\n(A): ..."``) after all few-shot
  examples of the item's category, each ending ``"A: The answer is (X)."``
  so the model continues in a form :func:`parse_answer` reads.

The seed separates question and ``A:`` with a blank line for Huginn and with
one newline for Llama; the ``*_llama`` templates are the Llama forms. Every
part is a switch: pick a template by name and override any field with
keyword arguments of :func:`build_prompt`. No torch is imported here.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Sequence

LETTERS = "ABCDEFGHIJ"
COT_PHRASE = "Let's think step by step. "
OPTIONS_HEADER = "Options are:"

__all__ = [
    "COT_PHRASE",
    "OPTIONS_HEADER",
    "TEMPLATES",
    "PromptTemplate",
    "build_prompt",
    "format_options",
    "format_question",
    "few_shot_block",
    "option_letters",
    "parse_answer",
    "template_for",
]


@dataclass(frozen=True)
class PromptTemplate:
    """What a prompt contains.

    ``options``: list the lettered options after the question. ``few_shot``:
    the seed prepends the category's few-shot examples with this template (a
    caller loads them from ``FEW_SHOT_DIR`` and passes them; :func:`build_prompt`
    uses whatever it is given). ``cot``: add the chain-of-thought phrase (the
    seed does so only when few-shot examples are present) and use the
    examples' ``cot_content``. ``separator``: between the question and
    ``"A: "`` (``"\\n\\n"`` Huginn, ``"\\n"`` Llama). ``chat_template``: wrap
    the text with the tokenizer's chat template as one user turn.
    """

    name: str
    options: bool
    few_shot: bool
    cot: bool = False
    separator: str = "\n\n"
    chat_template: bool = False
    description: str = ""


TEMPLATES: dict[str, PromptTemplate] = {
    t.name: t
    for t in (
        PromptTemplate("extraction", options=False, few_shot=False,
                       description="save_hidden_states (Huginn form): question only"),
        PromptTemplate("evaluation", options=True, few_shot=True,
                       description="evaluate_accuracy (Huginn form): few-shot examples of the category, "
                                   "question, lettered options"),
        PromptTemplate("extraction_llama", options=False, few_shot=False, separator="\n",
                       description="save_hidden_states (Llama form): question only"),
        PromptTemplate("evaluation_llama", options=True, few_shot=True, separator="\n",
                       description="evaluate_accuracy (Llama form): as evaluation, one newline before A:"),
    )
}


def template_for(kind: str, model_name: str) -> str:
    """The template name the seed uses for ``kind`` ("extraction"/"evaluation") and a model.

    Llama models (the name contains "llama") get the ``*_llama`` form, every
    other model (Huginn) the default form.
    """
    if kind not in ("extraction", "evaluation"):
        raise ValueError(f"kind must be 'extraction' or 'evaluation', not {kind!r}")
    return f"{kind}_llama" if "llama" in model_name.lower() else kind


def option_letters(n: int) -> str:
    """The first ``n`` option letters: ``option_letters(4) == "ABCD"`` (at most 10)."""
    if not 0 <= n <= len(LETTERS):
        raise ValueError(f"MMLU-Pro items have at most {len(LETTERS)} options, got {n}")
    return LETTERS[:n]


def format_options(options: Sequence[str]) -> str:
    """``"Options are:\\n(A): first\\n(B): second"``, the seed's option block."""
    letters = option_letters(len(options))
    return "\n".join([OPTIONS_HEADER] + [f"({letter}): {text}" for letter, text in zip(letters, options)])


def format_question(item: Any, options: bool) -> str:
    """The question, followed by the option block when ``options``."""
    if options:
        return f"{item.question}\n{format_options(item.options)}"
    return item.question


def few_shot_block(example: Any, cot: bool = False) -> str:
    """One few-shot example: question, options and its answer (or its CoT text)."""
    head = f"Q: {example.question}\n{format_options(example.options)}\n"
    if cot:
        cot_content = getattr(example, "cot_content", "") or ""
        if not cot_content:
            raise ValueError(f"few-shot example {getattr(example, 'index', '?')} has no cot_content")
        return head + cot_content
    return head + f"A: The answer is ({example.answer})."


def build_prompt(item: Any, template: str = "extraction", *, few_shot: Sequence[Any] = (), cot: bool = False,
                 chat_template: bool = False, tokenizer: Any = None, options: bool | None = None,
                 separator: str | None = None) -> str:
    """The prompt text for one item, as the seed builds it.

    ``template`` names an entry of :data:`TEMPLATES`; ``options`` and
    ``separator`` override the template's fields, ``cot`` and
    ``chat_template`` switch those parts on (or take the template's value
    when it has them on). ``few_shot`` examples (objects with question,
    options, answer and, for CoT, cot_content) are prepended, each followed
    by a blank line. With ``cot`` and few-shot examples the answer starts
    with the CoT phrase (the seed adds it only with few-shot examples). With
    ``chat_template`` the whole text becomes one user message of
    ``tokenizer.apply_chat_template(..., add_generation_prompt=True)``.
    """
    if template not in TEMPLATES:
        raise KeyError(f"unknown prompt template {template!r}; known: {', '.join(TEMPLATES)}")
    spec = TEMPLATES[template]
    spec = dataclasses.replace(
        spec,
        options=spec.options if options is None else options,
        separator=spec.separator if separator is None else separator,
        cot=spec.cot or cot,
        chat_template=spec.chat_template or chat_template,
    )
    shots = "".join(few_shot_block(example, spec.cot) + "\n\n" for example in few_shot)
    answer = "A: " + (COT_PHRASE if spec.cot and few_shot else "")
    text = f"{shots}Q: {format_question(item, spec.options)}{spec.separator}{answer}"
    if spec.chat_template:
        if tokenizer is None or getattr(tokenizer, "chat_template", None) is None:
            raise ValueError("chat_template=True needs a tokenizer that has a chat template")
        text = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                             add_generation_prompt=True)
    return text


_ANSWER = re.compile(r"answer is \(?([ABCDEFGHIJ])\)?")


def parse_answer(text: str) -> str | None:
    """The letter of the first ``answer is (X)`` / ``answer is X`` in ``text``, else None.

    The seed's scoring rule (case-sensitive letter, A-J): a response without
    such a phrase counts as no answer.
    """
    match = _ANSWER.search(text)
    return match.group(1) if match else None
