"""Everything that touches a torch model.

``models.loading`` (load_model), ``models.layers`` (the one layer numbering),
``models.hooks`` (capture, steering and accumulators, re-exported from
``models.capture``, ``models.steering``, ``models.accumulators``),
``models.patching``, ``models.scoring``, ``models.training``,
``models.placement`` and ``models.huginn``. Import the submodule you need;
``import models`` itself loads nothing heavy.
"""
