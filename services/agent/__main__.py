"""``python -m services.agent``: runs the agent with settings from ``BERTH_*`` variables;
``BERTH_AGENTS`` > 1 runs that many (simulated) agents in this one process (``fleet.py``)."""

from services.agent.fleet import run_fleet
from services.common.entrypoint import run_until_signalled

if __name__ == "__main__":
    run_until_signalled("agent", run_fleet, needs=("nats_url",), health=False)
