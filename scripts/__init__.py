"""Helpers for the template's own tests, benchmarks and demo."""
