"""Invalidation of the gateway's cached configuration when what it was built from changes.

Filled in by the hot path (gateway/state.py): connections, routes, settings, limits, tokens and
budgets all feed the per-project snapshot the proxy keeps in Redis and in process."""
