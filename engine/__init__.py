"""Burnrate: a streaming error-budget burn-rate engine."""

__version__ = "0.1.0"
