"""The feature cache: vectors of text by content, in memory and on disk, shared through Redis."""
