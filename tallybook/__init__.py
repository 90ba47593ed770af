"""Tallybook: billing and invoicing for billing specialists."""

__version__ = "0.1.0"
