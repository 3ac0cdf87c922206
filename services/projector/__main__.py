"""``python -m services.projector [--rebuild]``: runs the projector from BERTH_* settings."""

from services.projector.main import main

main()
