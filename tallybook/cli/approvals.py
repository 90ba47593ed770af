"""`tallybook approvals` (being written)."""
