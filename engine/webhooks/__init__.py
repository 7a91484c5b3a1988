"""Outbound webhooks: subscriptions to task events, delivered signed, in order per task, by the worker."""
