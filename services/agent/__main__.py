"""``python -m services.agent``: runs the agent with settings from ``BERTH_*`` variables."""

from services.agent.main import run_agent
from services.common.entrypoint import run_until_signalled

if __name__ == "__main__":
    run_until_signalled("agent", run_agent, needs=("nats_url",))
