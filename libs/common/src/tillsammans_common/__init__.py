"""Shared contracts and plumbing for the Tillsammans services."""
