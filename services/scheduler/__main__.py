"""``python -m services.scheduler``: runs the scheduler with settings from ``BERTH_*`` variables."""

import uvloop

from services.scheduler.main import run_scheduler
from services.common.entrypoint import run_until_signalled

if __name__ == "__main__":
    run_until_signalled("scheduler", run_scheduler, needs=("nats_url", "pg_dsn"), loop_factory=uvloop.new_event_loop)
