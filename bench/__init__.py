"""Benchmarks (figures in docs/benchmarks.md)."""
