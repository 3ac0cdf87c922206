"""Code execution in a session's main kernel and its log, over core NATS to the kernel's agent."""
