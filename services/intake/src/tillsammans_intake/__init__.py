"""Intake: a concern (oro) comes in, is validated and routed to the child's BBA."""
