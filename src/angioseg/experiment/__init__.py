"""The label-efficiency study of the CM-UNet paper as one command: ``angioseg experiment CONFIG.yaml --out DIR``.

A grid of pretraining methods (``none`` = from scratch) × label budgets × seeds. Every cell is a
:func:`~angioseg.train.finetune.run_finetune` run; pretraining runs
(:func:`~angioseg.pretrain.run.run_pretrain`) are shared between cells as the paper shares them.
The pieces, in the order data flows through them:

* :mod:`~angioseg.experiment.config` -- :class:`ExperimentConfig` (YAML in, resolved YAML out) and
  label budgets (counts, fractions or the paper's ``"PT-FT"`` ratios);
* :mod:`~angioseg.experiment.plan` -- the grid: splits per (budget, seed), pretraining runs, cells;
* :mod:`~angioseg.experiment.runner` -- runs what is not finished yet, records failures, resumes;
* :mod:`~angioseg.experiment.results` -- ``results.csv``, means ± sd, the honest "best method";
* :mod:`~angioseg.experiment.figures` and :mod:`~angioseg.experiment.report` -- Table I and
  Figures 3-6 of the paper as ``report.md`` and a self-contained ``report.html``.
"""
