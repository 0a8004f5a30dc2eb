"""Fakes, simulators and process helpers shipped for tests, benchmarks and the demo.

Every interface to the outside world (broker, store, source, clock) has an in-memory
implementation here, and one contract suite in ``tests/contract`` runs against all of them.
"""
