"""Workspaces: git worktrees and branches, snapshots, diff stats and drift
(:mod:`mimird.workspaces.git`), provisioning, removal, restore and repair, and the
file sandbox that confines an agent to its workspace."""
