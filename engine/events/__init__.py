"""Task events: numbered in commit order (numbering, sequencer), read back as deliveries (log), pushed to
subscribers (hub)."""
