"""Storage below every other room: the SQLite database and its table modules,
content-addressed blob files, free-space reserve, API keys and the audit log."""
