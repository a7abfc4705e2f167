"""Mapping: the BBA maps the child's whole situation on a well-being wheel (kartläggning)."""
