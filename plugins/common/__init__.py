"""Data formats and prompt building shared by several plugins (no jobs here).

* :mod:`plugins.common.lirefs` — the LiReFs MMLU-Pro file (load, schema
  check, sampling), the few-shot MMLU-Pro validation split, and importing the
  published LiReFs ``dataset.zip`` into a workspace.
* :mod:`plugins.common.prompts` — the seed's prompt formats as named
  templates, and the answer parser the seed scores with.
* :mod:`plugins.common.stats` — accuracies with their n and a bootstrap
  confidence interval (task_vector_patching, icm_label).
* :mod:`plugins.common.tables` — rows of results as a rich table rendered to
  text (``results.txt`` files).
* :mod:`plugins.common.jobs` — the entry point exposing the ``import_lirefs``
  job (importing it loads neither torch nor ``models``).

Nothing in this package imports torch. See docs/data.md.
"""
