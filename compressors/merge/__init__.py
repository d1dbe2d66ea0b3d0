"""Coarse-to-fine token merging by Marginal Information Gain: fewer, denser soft tokens.

After COMI (Tang et al., "COMI: Coarse-to-fine Context Compression via Marginal Information
Gain", ICLR 2026, arXiv:2602.01719), at the scale of SmolLM2-135M-Instruct on a CPU. The
context's token states are SmolLM2's own input embeddings of the passage tokens (the generator's
tokenizer), so merged vectors live in the space the generator reads through ``inputs_embeds``:

1. **Coarse: groups and their MIG.** Each passage is split into sentences (pySBD, the cached
   :func:`ragzip.compressors.units.sentence_spans`); a sentence's tokens form a group (long
   sentences are cut into groups of at most ``max_group_tokens``). A group's state is the mean
   of its *centred* token states (the vocabulary's mean embedding subtracted, so the direction
   every token shares does not dominate cosines); the question is pooled the same way. As in
   COMI, a group's marginal information gain is its relevance to the question minus its
   redundancy with the other groups::

       MIG(g) = cos(q, g) - λ · max_{h : cos(q, h) > cos(q, g)} cos(g, h)

   Redundancy counts only groups more relevant than ``g``, so of two near-duplicates the less
   relevant one pays, not both (the greedy order of :mod:`ragzip.compressors.mig`).
2. **Reallocation.** The budget of ``budget_tokens`` vectors is shared across groups in
   proportion to ``tokens(g) · exp(sharpness · z(g))``, ``z`` the MIG standardised over the
   request's groups: high-MIG groups keep more vectors (up to one per token, i.e. unmerged),
   low-MIG groups are merged harder, and the lowest get none (largest-remainder rounding of the
   water-filled shares).
3. **Fine: merging.** A group of ``n`` tokens given ``m`` vectors is cut into ``m`` runs of
   consecutive tokens (sizes differ by at most one; order kept). Each run becomes one vector,
   the average of its token states weighted by ``softmax(token_sharpness · MIG(t))`` with a
   token's MIG its cosine to the question minus ``λ`` times its cosine to the run's mean. The
   vector is rescaled to the weighted mean norm of its tokens (``keep_norm``): an average of
   differing embeddings is shorter than any of them, and the generator never saw such short
   inputs.

4. **Kept text (``text_share``, default 0.5).** First a share of the budget goes to whole
   sentences chosen by :mod:`ragzip.compressors.mig` (MiniLM relevance and redundancy); their
   tokens are sent as the generator's own input embeddings, exactly what it reads for that
   text, and only the other sentences are grouped, allocated and merged in the rest of the
   budget. ``text_share=0`` merges everything, as COMI does.

COMI fine-tunes the generator to read merged tokens. Here the generator stays frozen; an
optional small *adapter* (a residual low-rank map, trained by :mod:`ragzip.training.merge` on
gold-answer cross-entropy) is applied to the merged vectors, never to kept tokens, when
``Config.adapter`` names a weights folder (``"default"``: the one shipped for the generator).
Without it the method is training-free. The shipped adapters (rank 64; 74k parameters for
SmolLM2, 82k for Gemma 3 270M) were trained beside kept text (``ragzip train merge
--text-share 0.5 --minutes 20``, one CPU thread: 143 and 80 steps of 4 train questions, top-5
hybrid contexts at 4x or 8x); mean answer cross-entropy on 40 val questions fell from 4.77 to
2.32 (SmolLM2) and 3.16 to 2.25 (Gemma). Small readers follow text far better than merged
vectors. On 100 NQ test questions at 4x, everything merged answered 4-5%, half text with the
adapter 25% (SmolLM2) and 35% (Gemma), as ``mig`` at 4x (24%, 35%); but the text half alone
(``mig`` at 8x) answered 34% and 39%: the merged half carries no answer these readers can use.
The adapter's gain is the answer's *form*: with it both readers reply with a bare answer (exact
match 23% and 29%, against 0% and 14% for the text half alone;
``benchmarks/results/soft_context/``).

Budgets count vectors: each vector takes one prompt position, exactly as one text token would,
so ``budget_tokens`` of a 4x budget is a quarter of the context's tokens.
"""

from __future__ import annotations

from ragzip.compressors.merge.compressor import MergeCompressor

__all__ = ["MergeCompressor"]
