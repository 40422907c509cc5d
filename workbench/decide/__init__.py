"""Deciding what to ship: target machines (fit and estimated speed elsewhere), the evidence the other layers
stored per candidate (a file plus its KV-cache type and context), the recommendation under a user's
constraints, its chart and its stakeholder report.

May import everything below it (`core` … `people`).
"""
