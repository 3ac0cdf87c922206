"""The agent: runs the kernels assigned to it through a backend, reports what it sees, heartbeats."""
