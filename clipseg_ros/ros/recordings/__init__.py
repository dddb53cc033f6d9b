"""Recordings (bags) written for tests, benchmarks and demos, and read back by the offline commands."""
