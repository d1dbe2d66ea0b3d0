"""Layer 0: the types, errors and services every other part of ragzip uses.

Nothing here imports anything of ragzip outside this package."""
