"""Train the adapter of :mod:`ragzip.compressors.merge`, and score merge against text baselines.

COMI (Tang et al., 2026, *COMI: Coarse-to-fine Context Compression via Marginal Information
Gain*, arXiv:2602.01719) fine-tunes the reader to read merged tokens. On a CPU the reader,
SmolLM2-135M-Instruct, stays frozen; what is trained is a small residual low-rank
:class:`~ragzip.compressors.merge.Adapter` applied to the merged vectors before they are spliced
into the prompt:

* **Data.** Each *train* question's context is its top-``k`` hybrid (BM25 + MiniLM) passages
  from the NQ index, the gold passage swapped in for the last one when retrieval missed it, so
  the answer is always readable. A compression factor is drawn per example from ``ratios``.
  Contexts are merged by the untrained compressor (numpy, no gradient).
* **Loss.** The frozen model reads the prompt with the adapted vectors spliced in at the
  ``<empty_output>`` placeholders (the format of :func:`ragzip.prompts.soft_context`) and is
  teacher-forced on the first accepted answer followed by ``<|im_end|>``: cross-entropy on those
  tokens, plus, with ``kl_weight > 0``, the KL divergence to the same model's distribution on
  those tokens when it reads the full text (self-distillation). Gradients reach only the
  adapter.
* **Validation** on the first ``val_examples`` *val* questions, every ``val_every`` steps and
  at the end: mean answer loss at each ratio. Step 0 is the untrained (identity) adapter; the
  adapter with the best validation loss is saved. The test split is never read.

Run from the project root, holding one CPU slot::

    python -m ragzip.training.merge train --out compressors/weights/merge --minutes 30

The ``evaluate`` sub-command answers the first test questions with the embedded generator from
the uncompressed context and from each setting's compressed one (``name@ratio``, e.g.
``merge@4``, ``merge:adapter=default@4``, ``mig@4``) and writes EM/F1, context and prompt
tokens, prefill time and prefill FLOPs (``2 · parameters · prompt positions``) per setting::

    python -m ragzip.training.merge evaluate --n 100 --out reports/merge/eval.json \\
        --settings merge@4,merge:adapter=default@4,mig@4,truncate@4
"""
