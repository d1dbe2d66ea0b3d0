"""OpenAI-compatible HTTP proxy that compresses context on the way to the LLM."""
