"""Messaging: outbox and relay, idempotent consumers, consent replica and the egress gate."""
