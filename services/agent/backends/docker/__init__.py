"""The Docker backend of the agent (aiodocker): see README.md."""

from services.agent.backends.docker.backend import DockerBackend
from services.agent.backends.docker.probe import docker_available, docker_available_sync, docker_problem, no_docker_message

__all__ = ["DockerBackend", "docker_available", "docker_available_sync", "docker_problem", "no_docker_message"]
