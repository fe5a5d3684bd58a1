"""Plan, apply, verify, undo: the runner, its journal and lock, the fleet, plan identity and the events it reports."""
