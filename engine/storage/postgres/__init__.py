"""PostgreSQL-only storage: the one-statement finish of a transition, its driver-level reads, the LISTEN connection."""
