"""Admin for export tasks, the audit trail and API tokens."""
