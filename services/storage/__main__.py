"""``python -m services.storage``: runs the storage service with settings from ``BERTH_*`` variables."""

from services.storage.main import main

if __name__ == "__main__":
    main()
