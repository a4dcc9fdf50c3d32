"""Budgets and alerts: models arrive with their issue (see DESIGN.md)."""
