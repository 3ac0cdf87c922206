"""Fault injection against a running `berth up` (issue 13 item 5): SIGKILL of its service processes
while a load runs. Run it with ``python -m ops.faults``; the CI-sized version is tests/e2e/test_faults.py."""
