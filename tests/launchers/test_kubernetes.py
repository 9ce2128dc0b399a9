"""The pod a KubernetesWorker asks for, made from its template."""

from __future__ import annotations

import pytest

from flowbot import Builder, KubernetesWorker, Pipeline, Shell
from flowbot.errors import ConfigErrors
from flowbot.launchers import Dial, Instance


def test_the_pod_is_the_template_with_the_instance_name_labels_and_the_worker() -> None:
    template = {
        "metadata": {"generateName": "ci-", "labels": {"team": "ci"}},
        "spec": {
            "restartPolicy": "OnFailure",
            "containers": [
                {
                    "name": "build",
                    "image": "ci/base:1",
                    "args": ["ignored"],
                    "env": [{"name": "FLOWBOT_WORKER_SECRET", "value": "x"}, {"name": "KEEP", "value": "1"}],
                },
                {"name": "sidecar", "image": "ci/cache:1"},
            ],
        },
    }
    worker = KubernetesWorker("k", namespace="ci", pod_template=template, environment={"B": "2"})
    instance = Instance("k-2", "k", "fedcba9876543210")

    pod = worker.launcher.manifest(instance, Dial("tcp://master:9989", "k-2", "one-time"))

    assert pod["metadata"] == {
        "name": "flowbot-k-2-fedcba98",
        "namespace": "ci",
        "labels": {
            "team": "ci",
            "flowbot-master": "fedcba9876543210",
            "flowbot-worker": "k",
            "flowbot-instance": "k-2",
        },
    }
    assert pod["spec"]["restartPolicy"] == "OnFailure"  # the template's choice stands
    build, sidecar = pod["spec"]["containers"]
    assert build["image"] == "ci/base:1"
    assert build["command"] == [
        "python3",
        "-m",
        "flowbot_worker",
        "--master",
        "tcp://master:9989",
        "--name",
        "k-2",
        "--basedir",
        "/build",
    ]
    assert "args" not in build
    assert build["env"] == [
        {"name": "KEEP", "value": "1"},
        {"name": "B", "value": "2"},
        {"name": "FLOWBOT_WORKER_SECRET", "value": "one-time"},
    ]
    assert sidecar == {"name": "sidecar", "image": "ci/cache:1"}
    assert template["metadata"]["labels"] == {"team": "ci"}  # the template itself is left as it was


def test_checkconfig_wants_an_image() -> None:
    with pytest.raises(ConfigErrors) as caught:
        Pipeline(workers=[KubernetesWorker("k")], builders=[Builder("b", workers=["k"], steps=[Shell("true")])])

    assert "worker 'k': give an image, or a pod_template whose first container has one" in str(caught.value)
