"""Use cases. One function per use case; each owns its transaction and writes its audit event."""
