"""Storage on disk: the evaluator state file (and, as they land, the changelog,
incidents and audit storage)."""
