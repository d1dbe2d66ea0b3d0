"""``ragzip serve-model``: a local model behind an OpenAI-compatible HTTP API (or a simulated
one), the upstream a proxy can be tried against."""
