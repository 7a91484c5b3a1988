"""Stepwise engine: workflow definitions, the token runner, tasks, storage and events.

The engine imports neither ``schema`` nor ``server``; both build on it.
"""
