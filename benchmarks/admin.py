"""Admin for this app arrives with its issue."""
