"""Train the context-aware sentence classifier of :mod:`ragzip.compressors.sentence` (EXIT).

Recipe after EXIT (Hwang et al., 2024, *EXIT: Context-Aware Extractive Compression for Enhancing
Retrieval-Augmented Generation*): a cross-encoder reads question, sentence and the sentence's
surrounding context and is trained to tell sentences that answer the question from hard
negatives. Here, at CPU scale, on the NQ-open questions of ``../shared/data``:

* **train** split (1,200 questions) only. Positives: sentences of the gold passage holding an
  accepted answer (:func:`ragzip.experiments.answers.answer_in_text`). Hard negatives: the other
  sentences of the gold passage, and sentences of the passages BM25 (bm25s) ranks highest for the
  question among the *train* passages, minus the gold one. Retrieved sentences that hold an answer
  are ambiguous and left out. Questions whose gold passage has no answer-holding sentence are
skipped. * The encoder is all-MiniLM-L6-v2; its embeddings and lower layers stay frozen, so their
  outputs are computed once and cached, and only the upper layers and a small head are trained. Only
  those are saved, in float16.
* **val** split (300 questions, BM25 over train + val passages): AUC, accuracy, answer-sentence
  recall, and the adaptive threshold. The test split is never read here.

Run from the project root::

    python -m ragzip.training.sentence --out compressors/weights/sentence

Everything is seeded; ``training.json`` beside the weights records the command, settings, data
counts, CPU and wall time, and the validation figures.
"""
