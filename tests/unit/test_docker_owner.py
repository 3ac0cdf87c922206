"""Which containers are an agent's own (``owner.py``): its agent id and its Berth instance, or, for a container made
before instance labels, its ``io/`` bound from the agent's kernels directory."""

from __future__ import annotations

from pathlib import Path

from services.agent.backends.docker.owner import Owner
from services.agent.backends.docker.spec import instance_of


def _listed(labels: dict[str, str], io_source: str | None = None) -> dict:
    """An entry of the engine's container listing (labels at the top, mounts with their destination)."""
    mounts = [{"Type": "bind", "Source": "/repo/runner", "Destination": "/opt/berth/runner"}]
    if io_source is not None:
        mounts.append({"Type": "bind", "Source": io_source, "Destination": "/opt/berth/io"})
    return {"Labels": labels, "Mounts": mounts}


def _labels(agent: str = "local", instance: str | None = None, kernel: str = "k1") -> dict[str, str]:
    labels = {"berth.agent_id": agent, "berth.kernel_id": kernel}
    if instance is not None:
        labels["berth.instance"] = instance
    return labels


def test_the_instance_is_the_kernels_directory_stable_and_apart(tmp_path: Path) -> None:
    first, second = Owner.of("local", tmp_path / "first"), Owner.of("local", tmp_path / "second")
    assert first.instance == Owner.of("local", tmp_path / "first").instance == instance_of(tmp_path / "first/kernels")
    assert first.instance != second.instance
    (tmp_path / "link").symlink_to(tmp_path / "first")
    assert Owner.of("local", tmp_path / "link").instance == first.instance  # however its path is spelt
    assert first.label_filter == ["berth.agent_id=local"]


def test_a_labelled_container_is_its_agents_and_instances_only(tmp_path: Path) -> None:
    owner, other = Owner.of("local", tmp_path / "first"), Owner.of("local", tmp_path / "second")
    assert owner.owns(_listed(_labels(instance=owner.instance)))
    assert not owner.owns(_listed(_labels(instance=other.instance)))
    assert not owner.owns(_listed(_labels(agent="node-2", instance=owner.instance)))
    assert owner.by_labels(_labels(instance=other.instance)) is False
    assert owner.by_labels(_labels()) is None  # only its mounts can tell
    inspected = {"Config": {"Labels": _labels(instance=owner.instance)}, "Mounts": []}
    assert owner.owns(inspected) and not other.owns(inspected)


def test_a_container_from_before_instance_labels_is_recognised_by_its_io_mount(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    owner, other = Owner.of("local", tmp_path / "link"), Owner.of("local", tmp_path / "second")
    for kernels in (tmp_path / "real/kernels", tmp_path / "link/kernels"):  # the agent's directory, however spelt
        old = _listed(_labels(), io_source=str(kernels / "k1" / "io"))
        assert owner.owns(old)
        assert not other.owns(old)
    assert not owner.owns(_listed(_labels(), io_source=str(tmp_path / "second/kernels/k1/io")))
    assert not owner.owns(_listed(_labels(), io_source=str(tmp_path / "real/kernels/k2/io")))  # another kernel's
    assert not owner.owns(_listed(_labels()))  # no io/ mount
    assert not owner.owns(_listed({"berth.agent_id": "local"}, io_source=str(tmp_path / "real/kernels/k1/io")))
    assert not owner.owns(_listed(_labels(agent="node-2"), io_source=str(tmp_path / "real/kernels/k1/io")))
