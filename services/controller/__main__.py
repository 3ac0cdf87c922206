"""``python -m services.controller``: runs the controller with settings from ``BERTH_*`` variables."""

import uvloop

from services.controller.main import run_controller
from services.common.entrypoint import run_until_signalled

if __name__ == "__main__":
    run_until_signalled("controller", run_controller, needs=("nats_url", "pg_dsn"), loop_factory=uvloop.new_event_loop)
