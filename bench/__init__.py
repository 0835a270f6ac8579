"""Benchmarks of the server and the data generator they use (never imported by the server)."""
