"""Train the xRAG projector of :mod:`ragzip.compressors.xrag` on CPU.

Recipe after xRAG (Cheng et al., 2024, *xRAG: Extreme Context Compression for
Retrieval-augmented Generation with One Token*, arXiv:2405.13792), at CPU scale. The retriever's
encoder (all-MiniLM-L6-v2) and the generator (SmolLM2-135M-Instruct) stay frozen; only the
projector from a passage's sentence embedding to one input embedding of the generator learns.

* **Stage 1, paraphrase pretraining.** The prompt is the RAG prompt of
  :func:`ragzip.prompts.build_messages` whose one context passage is the placeholder token, with
  a "repeat the context" instruction; the target is the passage itself (its first
  ``recon_tokens`` tokens, teacher-forced). Loss: cross-entropy on the passage tokens.
* **Stage 2, question answering with self-distillation.** The prompt is exactly the inference
  prompt: the question and the placeholder for its gold passage. The target is the first
  accepted answer and the end-of-turn token. Loss: cross-entropy on the answer plus
  ``kl_weight`` times KL(teacher ‖ student) on the answer positions, where the teacher is the
  same frozen model given the full passage text in place of the placeholder.

Data: the NQ-open **train** split (1,200 questions with gold passages) for training; the first
``val_n`` questions of the **val** split for the curves. The test split is never read here.

Run from the project root (one thread, about half an hour on a laptop core)::

    python -m ragzip.training.xrag --out compressors/weights/xrag

Everything is seeded with generator objects (no global seeding); ``training.json`` beside the
weights records the command, settings, per-step losses, validation curves and timings.
"""
