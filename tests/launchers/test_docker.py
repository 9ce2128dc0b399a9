"""What a DockerWorker asks the Docker Engine API for, and what checkconfig says about its settings."""

from __future__ import annotations

import pytest

from flowbot import Builder, DockerWorker, Pipeline, Shell
from flowbot.errors import ConfigErrors
from flowbot.launchers import Dial, Instance
from flowbot.launchers.docker import memory_bytes


def test_a_container_runs_the_worker_with_its_credential_labels_and_limits() -> None:
    worker = DockerWorker(
        "d",
        image="ci/worker:1",
        command=["/venv/bin/flowbot-worker"],
        environment={"A": "1", "FLOWBOT_WORKER_SECRET": "not this"},
        volumes={"/srv/cache": "/cache:ro"},
        network="ci-net",
        cpus=1.5,
        memory="512m",
    )
    instance = Instance("d-1", "d", "0123456789abcdef")

    config = worker.launcher.config(instance, Dial("tcp://ci:9989", "d-1", "one-time"))

    assert config["Image"] == "ci/worker:1"
    assert config["Cmd"] == [
        "/venv/bin/flowbot-worker",
        "--master",
        "tcp://ci:9989",
        "--name",
        "d-1",
        "--basedir",
        "/build",
    ]
    assert sorted(config["Env"]) == ["A=1", "FLOWBOT_WORKER_SECRET=one-time"]  # the start's credential wins
    assert config["Labels"] == {"flowbot-master": "0123456789abcdef", "flowbot-worker": "d", "flowbot-instance": "d-1"}
    assert config["HostConfig"] == {
        "Binds": ["/srv/cache:/cache:ro"],
        "NetworkMode": "ci-net",
        "NanoCpus": 1_500_000_000,
        "Memory": 512 * 1024**2,
    }
    assert instance.resource_name == "flowbot-d-1-01234567"


@pytest.mark.parametrize(
    ("value", "expected"), [(1024, 1024), ("2g", 2 * 1024**3), ("1.5G", 1536 * 1024**2), ("64kb", 65536)]
)
def test_memory_is_bytes_or_a_size(value, expected) -> None:
    assert memory_bytes(value) == expected


def test_checkconfig_names_bad_docker_settings() -> None:
    with pytest.raises(ConfigErrors) as caught:
        Pipeline(
            workers=[DockerWorker("d", image="", memory="lots", cpus="two")],
            builders=[Builder("b", workers=["d"], steps=[Shell("true")])],
        )

    text = str(caught.value)
    assert "worker 'd': image must be the name of an image; got ''" in text
    assert "worker 'd': memory must be a number of bytes or a size like '512m' or '2g'; got 'lots'" in text
    assert "worker 'd': cpus must be a number; got 'two'" in text
