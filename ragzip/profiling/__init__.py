"""Latency break-even profiling: when does compressing the context make the answer come sooner?

Compression pays only inside a window of prompt length, ratio and hardware (Jha et al., 2025,
"Prompt Compression in the Wild: Measuring Latency, Rate Adherence, and Quality for Faster LLM
Inference"): below some length the compressor costs more than the prefill it saves. This package
measures that window for one generator on one machine and fits simple cost models:

* compression time ``T_c(n) = a + b·n`` per (compressor, ratio), ``n`` = context tokens;
* time to first token ``TTFT(p) = a + b·p + c·p²`` over prompt tokens ``p`` (context plus the
  fixed prompt overhead of template, instructions and question);
* decode seconds per token ``d(p) = a + b·p`` (a constant when the slope is not positive).

The break-even length ``n*`` is the smallest ``n`` with ``T_c(n) + TTFT(n/r) < TTFT(n)`` (and the
same with the expected answer's decode time added for end-to-end latency). A
:class:`Profile` is saved as JSON keyed by machine and generator, so a policy
(:mod:`ragzip.policy`) can decide per request whether, how and how much to compress.
"""
