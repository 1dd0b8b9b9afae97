"""Benchmarks; run each script directly (see docs/performance.md)."""
