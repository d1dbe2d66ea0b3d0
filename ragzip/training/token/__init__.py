"""Train the query-aware token classifier of :mod:`ragzip.compressors.token`.

Recipe after LLMLingua-2 (Pan et al., 2024) with question-aware labels after LongLLMLingua
(Jiang et al., 2024), at CPU scale, on the NQ-open questions of ``../shared/data``:

1. **Teacher.** The embedded SmolLM2-135M-Instruct (:func:`ragzip.weights.load_smollm2`, run in
   bfloat16) reads each *train* question's gold passage twice — after ``"Context:\\n"`` and
   after ``"Question: …\\nContext:\\n"`` — and gives every passage token its loss in both runs.
   The contrastive importance of a token is the loss without the question minus the loss with
   it; a word's importance is the sum over its tokens (SmolLM2 tokens map to words through
   their offsets) plus ``surprisal_weight`` times its remaining loss given the question (its
   self-information, LLMLingua's original signal). Per-token losses are cached under
   ``--cache`` (``<sha1>.npz``), so re-runs skip the teacher.
2. **Labels** are graded keep-targets for a two-class cross-entropy with soft targets. In a
   gold passage: answer words 1.0, the other words of sentences holding an accepted answer
   0.75, the ``positive_fraction`` (30%) most important of the remaining words 0.5, all else 0
   (on average 60% of a gold passage's words get a non-zero target, mean 0.40); the grades
   teach the order that high compression needs. Each train question also gets its best BM25
   (bm25s) passage among the *other train* passages as a negative, all 0 except answer
   occurrences (no teacher run there, which keeps the CPU time in bounds). Seeded synthetic
   key-value records
   (``"<uuid>": "<uuid>"``, several formats and question phrasings; generated here, never read
   from the KV evaluation file) teach the encoder to keep the record whose key the question
   names and drop the others.
3. **Student.** ``BertForTokenClassification`` over all-MiniLM-L6-v2 reading
   ``[CLS] question [SEP] passage [SEP]``; subword tokens take their word's target and only
   passage tokens are scored. The embeddings and lower layers stay frozen, so their outputs are
   computed once; only the top ``train_layers`` layers and the head are trained (AdamW, linear
   decay, bfloat16 autocast) and saved, in float16.
4. **Validation** after every epoch on the *val* split: each question's gold passage and its
   three best BM25 passages among train + val passages, compressed by the real selection code
   (:func:`ragzip.compressors.token.select_words`, budgets in SmolLM2 tokens) at 2x, 4x and
   8x; the share of contexts that still hold an answer. Plus the share of synthetic
   key-value cases (another seed) whose asked record ranks first. The epoch with the best mean
   answer recall is saved. The test split is never read.

Run from the project root::

    python -m ragzip.training.token --out compressors/weights/token --threads 1

``training.json`` beside the weights records the command, settings, data counts, CPU and wall
time per stage, and the validation curve. For the shipped weights, on two CPU cores shared with
other jobs (one torch thread): the teacher took 543 s of CPU (50 min of wall time, the cores
being busy), labels, encoding, training and validation 553 s of CPU (16 min wall) — about 18
CPU minutes in all. Everything is seeded and the run is deterministic on CPU: a second run from
the cached teacher losses wrote byte-identical weights. The validation curve (recall at
2x / 4x / 8x; synthetic KV top-1): epoch 0 (untrained head) 0.43 / 0.25 / 0.12, 0.03;
epoch 1 0.91 / 0.75 / 0.56, 1.0; epoch 2 0.94 / 0.82 / 0.61, 1.0; epoch 3 0.95 / 0.83 / 0.63,
1.0 (shipped).
"""
