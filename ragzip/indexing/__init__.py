"""Building indexes beyond one process: on Ray (:mod:`.ray_engine`), in resumable parts
(:mod:`.shards`)."""
