"""The journal: durable appends with per-session ``seq``, fan-out to
subscribers, replay, and full-text search."""
