"""Helpers shared by every app: the guarded egress client, the encrypted secret field, and
other building blocks. This package imports no Pulse app (accounts, benchmarks, costs, alerts…),
so any app may import it without dependencies pointing the wrong way."""
