"""The controller: turns agent reports into domain events and watches agents' liveness."""
