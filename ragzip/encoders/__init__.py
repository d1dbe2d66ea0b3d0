"""Fast CPU backends of ragzip's MiniLM encoders: ONNX Runtime graphs exported from the
shipped weights (:mod:`ragzip.encoders.onnx`) and the sentence embedder that runs on them
(:mod:`ragzip.encoders.minilm`)."""
