"""Developer scripts; a package so that the tests and the benchmarks can import ``scripts.pgcluster``."""
