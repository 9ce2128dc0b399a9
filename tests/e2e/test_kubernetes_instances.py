"""Workers started on demand in Kubernetes pods: against a fake of the pods API whose kubelet runs
each pod's worker as a real local process (tests/kubernetes_fake.py), and against a real cluster
when ``KUBECONFIG`` is set (with ``FLOWBOT_TEST_KUBE_IMAGE``, a worker image the cluster can pull, and
``FLOWBOT_TEST_KUBE_MASTER``, the master's endpoint as its pods reach it)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

import flowbot
from flowbot import Builder, ForceScheduler, KubernetesWorker, Pipeline, Shell

from ..kubernetes_fake import FakeCluster
from ..support import TEST_HEARTBEAT, wait_for_async


@dataclass
class Kube:
    """Where the tests' pods go."""

    kubeconfig: str | None
    namespace: str
    image: str
    fake: FakeCluster | None = None
    master: str = "tcp://127.0.0.1:0"  # where the master listens, as its pods reach it

    def worker(self, name: str = "kube", **options) -> KubernetesWorker:
        options.setdefault("image", self.image)
        return KubernetesWorker(name, namespace=self.namespace, kubeconfig=self.kubeconfig, **options)


@pytest.fixture(params=["fake", pytest.param("cluster", marks=pytest.mark.kubernetes_cluster)])
async def kube(request, tmp_path: Path):
    if request.param == "cluster":
        missing = [
            v for v in ("KUBECONFIG", "FLOWBOT_TEST_KUBE_IMAGE", "FLOWBOT_TEST_KUBE_MASTER") if v not in os.environ
        ]
        if missing:
            pytest.skip(f"no Kubernetes cluster to test against ({', '.join(missing)} not set)")
        yield Kube(
            None,
            os.environ.get("FLOWBOT_TEST_KUBE_NAMESPACE", "default"),
            os.environ["FLOWBOT_TEST_KUBE_IMAGE"],
            master=os.environ["FLOWBOT_TEST_KUBE_MASTER"],
        )
        return
    fake = FakeCluster(tmp_path)
    fake.start()
    try:
        yield Kube(str(fake.kubeconfig(tmp_path / "kubeconfig")), "ci", "registry.example.org/flowbot-worker:1", fake)
    finally:
        await fake.stop()


def pipeline(worker: KubernetesWorker, command: str = "echo built in $FLOWBOT_WORKER") -> Pipeline:
    return Pipeline(
        workers=[worker],
        schedulers=[ForceScheduler("force", builders=["unit"])],
        builders=[Builder("unit", workers=[worker.name], collapse_requests=False, steps=[Shell(command)])],
    )


def master_for(kube: Kube, worker: KubernetesWorker, tmp_path: Path, command: str = "true") -> flowbot.Master:
    return flowbot.Master(
        pipeline(worker, command), basedir=tmp_path / "m", http=None, heartbeat=TEST_HEARTBEAT, workers=kube.master
    )


async def pods(kube: Kube, master: flowbot.Master) -> list[str]:
    """The names of the pods labelled with ``master``."""
    launcher = master.pipeline.workers[0].launcher
    return sorted(i.resource_name for i in await launcher.instances(master.instance_id))


async def test_builds_run_in_pods_made_from_the_template_and_the_pods_are_deleted_after(kube, tmp_path) -> None:
    # Given a worker whose pods follow a template, two at a time, one build each
    template = {
        "metadata": {"labels": {"team": "ci"}, "annotations": {"owner": "ci@example.org"}},
        "spec": {
            "serviceAccountName": "builder",
            "containers": [{"name": "build", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}],
        },
    }
    worker = kube.worker(pod_template=template, max_instances=2, idle_timeout=0, environment={"GREETING": "hi"})
    master = master_for(kube, worker, tmp_path, "echo $GREETING from $FLOWBOT_WORKER")
    await master.start()
    try:
        # When three builds are asked for
        for _ in range(3):
            await master.force("unit")
        await master.wait_idle(timeout=120)
        await master.latent.settled(timeout=60)

        # Then all three ran, each in a pod of its own, and no pod is left
        builds = master.history.builds()
        assert list(builds["result"].astype(str)) == ["SUCCESS"] * 3
        assert set(builds["worker"]) <= {"kube-1", "kube-2"}
        assert await pods(kube, master) == []
    finally:
        await master.stop()
    if kube.fake is None:
        return

    # ... each pod as the template has it, named and labelled for its instance, running the worker
    suffix = master.instance_id[:8]
    sent = kube.fake.created
    assert len(sent) == 3
    assert {p["metadata"]["name"] for p in sent} <= {f"flowbot-kube-1-{suffix}", f"flowbot-kube-2-{suffix}"}
    pod = sent[0]
    instance = pod["metadata"]["labels"]["flowbot-instance"]
    assert pod["metadata"]["labels"] == {
        "team": "ci",
        "flowbot-master": master.instance_id,
        "flowbot-worker": "kube",
        "flowbot-instance": instance,
        "flowbot-start": pod["metadata"]["labels"]["flowbot-start"],
    }
    assert pod["metadata"]["annotations"] == {"owner": "ci@example.org"}
    assert pod["spec"]["serviceAccountName"] == "builder"
    assert pod["spec"]["restartPolicy"] == "Never"
    (container,) = pod["spec"]["containers"]
    assert container["name"] == "build"
    assert container["image"] == kube.image
    assert container["resources"] == {"limits": {"cpu": "1", "memory": "1Gi"}}
    assert container["command"][:3] == ["python3", "-m", "flowbot_worker"]
    assert container["command"][container["command"].index("--name") + 1] == instance
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["GREETING"] == "hi"
    assert len(env["FLOWBOT_WORKER_SECRET"]) >= 40
    assert len({p["spec"]["containers"][0]["env"][-1]["value"] for p in sent}) == 3  # a credential per start
    # ... through the kubeconfig's token, and every pod deleted
    assert kube.fake.refused_tokens == 0
    assert sorted(kube.fake.deleted) == sorted(p["metadata"]["name"] for p in sent)


async def test_a_pod_that_never_runs_is_deleted_at_start_timeout(kube, tmp_path) -> None:
    worker = kube.worker(image="pending/worker:1", start_timeout=2)
    master = master_for(kube, worker, tmp_path)
    await master.start()
    try:
        (request,) = await master.force("unit")
        await wait_for_async(lambda: master.latent.failures["kube"], 30, "the start to fail")
        await master.latent.settled(timeout=30)

        assert request in master.queue  # it waits for the next start
        assert await pods(kube, master) == []
    finally:
        await master.stop()


async def test_a_pod_whose_image_cannot_be_pulled_fails_at_once_and_says_why(kube, tmp_path, caplog) -> None:
    worker = kube.worker(image="missing/worker:1", start_timeout=120)
    master = master_for(kube, worker, tmp_path)
    await master.start()
    try:
        await master.force("unit")
        await wait_for_async(lambda: master.latent.failures["kube"], 30, "the start to fail")
        await master.latent.settled(timeout=30)

        assert "the pod cannot run: ErrImagePull" in caplog.text
        assert await pods(kube, master) == []
    finally:
        await master.stop()


async def test_cancelling_the_request_deletes_the_pod_starting_for_it(kube, tmp_path) -> None:
    worker = kube.worker(image="pending/worker:1", start_timeout=120)
    master = master_for(kube, worker, tmp_path)
    await master.start()
    try:
        (request,) = await master.force("unit")
        await wait_for_async(lambda: master.latent.views(), 10, "the start")
        launcher = worker.launcher
        for _ in range(100):
            if await launcher.instances(master.instance_id):
                break
            await wait_for_async(lambda: True)

        await master.cancel_request(request)

        await master.latent.settled(timeout=30)
        assert await pods(kube, master) == []
        assert master.latent.failures["kube"] == 0
    finally:
        await master.stop()


async def test_a_master_starting_deletes_the_pods_it_left_and_no_others(kube, tmp_path) -> None:
    # Given pods a previous run of the master left, and one of another master
    worker = kube.worker(idle_timeout=-1)
    first = master_for(kube, worker, tmp_path)
    await first.start()
    await first.force("unit")
    await first.wait_idle(timeout=60)
    left = await pods(kube, first)
    assert len(left) == 1
    other = kube.worker(name="other", idle_timeout=-1)
    neighbour = flowbot.Master(pipeline(other), basedir=tmp_path / "n", http=None, workers=kube.master)
    await neighbour.start()
    await neighbour.force("unit")
    await neighbour.wait_idle(timeout=60)
    first.latent.stop = _abandon  # a crash: the master goes without stopping its pods
    await first.stop()
    assert await pods(kube, first) == left
    await worker.launcher.close()

    # When the master starts again
    again = master_for(kube, kube.worker(idle_timeout=-1), tmp_path)
    await again.start()
    try:
        # Then its pods are gone, and the other master's is still there
        assert await pods(kube, again) == []
        assert len(await pods(kube, neighbour)) == 1
    finally:
        await again.stop()
        await neighbour.stop()


async def _abandon() -> None:
    """A latent component's stop that leaves every instance where it is."""


async def test_a_wrong_token_fails_the_start_with_what_the_cluster_said(kube, tmp_path, caplog) -> None:
    if kube.fake is None:
        pytest.skip("the fake's token only")
    config = Path(kube.kubeconfig)
    config.write_text(config.read_text().replace("fake-cluster-token", "stolen"))
    master = master_for(kube, kube.worker(), tmp_path)
    await master.start()
    try:
        await master.force("unit")
        await wait_for_async(lambda: master.latent.failures["kube"], 30, "the start to fail")
        await master.latent.settled(timeout=30)  # the failure is logged before its slot is freed
        assert "Kubernetes refused the pod: Unauthorized" in caplog.text
        assert kube.fake.refused_tokens >= 1
        assert not kube.fake.pods
    finally:
        await master.stop()
