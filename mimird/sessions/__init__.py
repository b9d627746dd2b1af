"""Sessions: the state machine and its status vocabulary, the session records,
setup commands, and crash recovery (reaping leftovers, reconciling worktrees)."""
