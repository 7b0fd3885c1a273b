"""Reporters: each renders an AuditReport, so terminal, JSON and the rest never disagree."""
