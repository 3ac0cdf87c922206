"""The agent's kernel backends: the port (``base``) and its implementations (``docker``,
``process``, ``simulated``). See README.md."""
