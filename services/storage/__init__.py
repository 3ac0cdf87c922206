"""The storage service: folders on volumes, and their data plane over HTTP."""
