"""What evaluation, profiling, training and the benchmarks share: the datasets, answer
matching and the report writer."""
