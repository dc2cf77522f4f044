"""Evaluation: reconstruction metrics, codebook statistics, semantic retention, benchmarks."""
