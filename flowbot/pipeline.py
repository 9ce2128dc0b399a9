"""A pipeline: the graph of change sources, schedulers, builders and workers that a master runs.

Nodes are sources, schedulers and builders; edges run from a source to the schedulers that take
changes, from a scheduler to the builders it requests, and from a builder to the schedulers its
``Trigger`` steps start or its ``Dependent`` schedulers follow. A pipeline checks itself when it
is made, so a mistake (a name nobody defines, a duplicate name, a trigger cycle) is reported at
once, with the file and line of the object at fault, before anything runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from flowbot_worker.curve import KeyPair, check_key, load_key_pair
from flowbot_worker.errors import KeyFileError

from . import pipeline_diff
from .auth import Auth
from .builder import Builder
from .defaults import LOG_MAX_BYTES
from .errors import ConfigError, ConfigErrors
from .fields import ANYTHING, BYTES, PROPERTIES, Kind, checked, list_of, optional, where
from .locks import problems as lock_problems
from .matrix import Matrix, fits, label, with_cells
from .pipeline_diff import PipelineDiff
from .records import BuildsetSpec
from .reporters.base import Reporter
from .retention import Retention
from .schedulers.base import Scheduler
from .schedulers.force import ForceScheduler
from .schedulers.triggerable import Dependent, Triggerable
from .secrets import SecretProvider
from .sources.base import ChangeSource
from .steps.base import Step
from .steps.git import Git
from .steps.transfer import ARTIFACTS
from .steps.transfer import problems as transfer_problems
from .steps.trigger import Trigger
from .workers import Worker

#: What answers ``%(secret:name)s``: anything with a ``get(name)`` method.
_SECRET_PROVIDER = Kind(
    "a secret provider such as SecretsInDirectory(...)",
    lambda value: callable(getattr(value, "get", None)) and not isinstance(value, type),
)


class Pipeline:
    """Everything a master runs.

    Args:
        workers: the workers the master accepts.
        sources: where changes come from (pollers, webhooks); ``sendchange`` always works.
        schedulers: what turns changes and requests into builds.
        builders: what runs, and where.
        properties: global properties every build gets.
        secrets: providers of ``%(secret:name)s`` values, asked in order.
        master: a master that should run this pipeline from now on (in a notebook, running the
            cell that defines the pipeline again reconfigures the running master, showing first
            what changes and what that does to the builds running and waiting).
        dry_run: with ``master``, only show what running this pipeline would change.
        reporters: what tells people and systems how builds went (GitHub, HTTP, mail).
        auth: who may control the master (and read it); None: anyone who reaches its HTTP port.
        url: where people reach the master's web page, for links in reports (default: the
            master's own HTTP address). Its host name is one the master answers to.
        allowed_hosts: the other names the master is served under (behind a proxy that keeps the
            ``Host`` header, say ``["ci.example.org"]``); ``["*"]`` answers any. Loopback names,
            IP addresses and the name the master binds are always served; a request for any other
            ``Host`` is refused, so a page whose DNS name is rebound to the master's address gets
            nothing from it.
        artifacts: the directory that file transfers (``FileUpload``, ``DirectoryUpload``,
            ``FileDownload``) reach on the master, and the only one: relative to the master's
            directory, or absolute. It must not hold the master's own files.
        retention: how long the store keeps logs and builds (None: forever).
        max_log: the most bytes of program output a step's log keeps, for steps that do not say
            (``Shell(max_log=...)``); past it output is counted, not stored, and the log and the
            step's summary say how much was not kept. None: no limit.
        curve_key: the master's CURVE secret key file (``flowbot create-key`` makes one), relative
            to the pipeline file's directory (the current one in a Jupyter cell): with it the worker
            link is encrypted, and only workers whose ``public_key`` is declared connect. It is read
            here, so checkconfig reports a bad one.

    Raises:
        ConfigErrors: every problem found, each with the file and line it comes from.
    """

    @checked(
        workers=list_of(ANYTHING, "a list of workers"),  # each checked by validate(), as when changed later
        sources=list_of(ANYTHING, "a list of change sources"),
        schedulers=list_of(ANYTHING, "a list of schedulers"),
        builders=list_of(ANYTHING, "a list of builders"),
        properties=PROPERTIES,
        secrets=list_of(_SECRET_PROVIDER, "a list of secret providers"),
        reporters=list_of(ANYTHING, "a list of reporters"),
        max_log=optional(BYTES),
    )
    def __init__(
        self,
        *,
        workers: Iterable[Worker] = (),
        sources: Iterable[ChangeSource] = (),
        schedulers: Iterable[Scheduler] = (),
        builders: Iterable[Builder] = (),
        properties: dict[str, Any] | None = None,
        secrets: Iterable[SecretProvider] = (),
        master: Any = None,
        reporters: Iterable[Reporter] = (),
        auth: Auth | None = None,
        url: str | None = None,
        allowed_hosts: Iterable[str] = (),
        artifacts: str | Path = ARTIFACTS,
        retention: Retention | None = None,
        max_log: int | None = LOG_MAX_BYTES,
        curve_key: str | Path | None = None,
        dry_run: bool = False,
    ):
        self.workers = list(workers)
        self.sources = list(sources)
        self.schedulers = list(schedulers)
        self.builders = list(builders)
        self.properties = dict(properties or {})
        self.secrets = list(secrets)
        self.reporters = list(reporters)
        self.auth = auth
        self.url = url
        self.allowed_hosts = allowed_hosts
        self.artifacts = artifacts
        self.retention = retention
        self.max_log = max_log
        self.curve_key = curve_key
        #: The master's CURVE key pair read from ``curve_key`` (None: the link is not encrypted).
        self.curve: KeyPair | None = None
        self.validate()
        if master is not None:
            master.use(self, dry_run=dry_run)

    # -- lookups ------------------------------------------------------------------------------

    def builder(self, name: str) -> Builder | None:
        return next((b for b in self.builders if b.name == name), None)

    def worker(self, name: str) -> Worker | None:
        return next((w for w in self.workers if w.name == name), None)

    def scheduler(self, name: str) -> Scheduler | None:
        return next((s for s in self.schedulers if s.name == name), None)

    def with_cells(self, spec: BuildsetSpec | None) -> BuildsetSpec | None:
        """``spec`` with the cells of its builders that have a matrix (see :mod:`flowbot.matrix`)."""
        return with_cells(spec, {b.name: b.matrix for b in self.builders if b.matrix is not None})

    def force_scheduler_for(self, builder: str) -> ForceScheduler | None:
        """The first force scheduler that lists ``builder``."""
        return next((s for s in self.schedulers if isinstance(s, ForceScheduler) and builder in s.builders), None)

    def diff(self, other: Pipeline) -> PipelineDiff:
        """What changes from this pipeline to ``other``: workers, sources, schedulers, builders and
        reporters added, removed, or changed setting by setting (see :mod:`flowbot.pipeline_diff`)."""
        return pipeline_diff.diff(self, other)

    # -- checking -----------------------------------------------------------------------------

    @property
    def warnings(self) -> list[str]:
        """What is allowed but unsafe (a worker without a secret), for checkconfig and the master's log."""
        return [w.warning for w in self.workers if isinstance(w, Worker) and w.warning]

    def validate(self) -> None:
        """Raise :class:`ConfigErrors` listing every problem; return quietly if there is none."""
        errors: list[ConfigError] = []

        def problem(text: str, obj: Any, field: str | None = None) -> None:
            errors.append(ConfigError.at(text, where(obj, field) or self.defined_at))

        kinds = (
            ("source", self.sources, ChangeSource),
            ("worker", self.workers, Worker),
            ("scheduler", self.schedulers, Scheduler),
            ("builder", self.builders, Builder),
        )
        for kind, items, cls in kinds:
            seen: set[str] = set()
            for item in items:
                if not isinstance(item, cls):
                    problem(f"{kind}s must be {cls.__name__} objects; got {item!r}", self, f"{kind}s")
                    continue
                if not isinstance(item.name, str) or not item.name or "/" in item.name:
                    problem(f"{kind} name {item.name!r} must be a non-empty string without '/'", item, "name")
                elif item.name in seen:
                    problem(f"duplicate {kind} name {item.name!r}", item, "name")
                else:
                    seen.add(item.name)

        worker_names = {w.name for w in self.workers if isinstance(w, Worker) and isinstance(w.name, str)}
        for worker in self.workers:
            if isinstance(worker, Worker):
                for text in worker.problems():
                    problem(f"worker {worker.name!r}: {text}", worker)
                if worker.launcher is not None and type(worker.max_instances) is int:
                    taken = worker_names & {worker.instance_name(n) for n in range(1, worker.max_instances + 1)}
                    for name in sorted(taken):
                        problem(f"worker {name!r} has the name of an instance of worker {worker.name!r}", worker)
        builder_names = {b.name for b in self.builders if isinstance(b, Builder) and isinstance(b.name, str)}
        for scheduler in self.schedulers:
            if not isinstance(scheduler, Scheduler):
                continue
            if not scheduler.builders:
                problem(f"scheduler {scheduler.name!r} lists no builders", scheduler, "builders")
            for name in scheduler.builders:
                if not isinstance(name, str) or name not in builder_names:
                    problem(
                        f"scheduler {scheduler.name!r} names builder {name!r}, which no builder defines",
                        scheduler,
                        "builders",
                    )
        for builder in self.builders:
            if not isinstance(builder, Builder):
                continue
            if not builder.workers:
                problem(f"builder {builder.name!r} lists no workers", builder, "workers")
            for name in builder.workers:
                if not isinstance(name, str) or name not in worker_names:
                    problem(
                        f"builder {builder.name!r} names worker {name!r}, which no worker declares", builder, "workers"
                    )
            if not builder.steps:
                problem(f"builder {builder.name!r} has no steps", builder, "steps")
            if builder.matrix is not None:
                declared = [w for name in builder.workers if isinstance(w := self.worker(name), Worker)]
                if declared and (homeless := _cell_without_worker(builder.matrix, declared)) is not None:
                    problem(
                        f"builder {builder.name!r}: no worker of {[w.name for w in declared]} takes matrix cell "
                        f"{label(homeless)} (a worker's properties must agree with the cell's values)",
                        builder,
                        "matrix",
                    )
            for step in builder.steps:
                if not isinstance(step, Step):
                    problem(
                        f"builder {builder.name!r} has {step!r} among its steps, which is not a Step", builder, "steps"
                    )
                elif isinstance(step, Trigger):
                    for name in step.schedulers:
                        if not isinstance(self.scheduler(name), Triggerable):
                            problem(
                                f"builder {builder.name!r} triggers {name!r}, which is not a Triggerable scheduler",
                                step,
                                "schedulers",
                            )
        for text, culprit in lock_problems(b for b in self.builders if isinstance(b, Builder)):
            problem(text, culprit)
        for text, culprit in self._codebase_problems():
            problem(text, culprit)
        base = (self.defined_at and self.defined_at.directory) or Path.cwd()
        for text, culprit in transfer_problems(self.builders, self.artifacts, base):
            problem(text, culprit)
        for scheduler in self.schedulers:
            if isinstance(scheduler, Dependent):
                for name in scheduler.upstream:
                    if name not in builder_names:
                        problem(
                            f"dependent scheduler {scheduler.name!r} follows builder {name!r}, which no builder "
                            "defines",
                            scheduler,
                            "upstream",
                        )
        for reporter in self.reporters:
            if not isinstance(reporter, Reporter):
                problem(f"reporters must be Reporter objects; got {reporter!r}", self, "reporters")
                continue
            for name in reporter.builders or ():
                if name not in builder_names:
                    problem(
                        f"reporter {reporter.name!r} names builder {name!r}, which no builder defines",
                        reporter,
                        "builders",
                    )
        if self.auth is not None and not isinstance(self.auth, Auth):
            problem(f"auth must be an Auth object; got {self.auth!r}", self, "auth")
        elif self.auth is not None:
            for role in self.auth.roles:
                for name in sorted(role.builders or ()):
                    if name not in builder_names:
                        text = f"role {role.name!r} names builder {name!r}, which no builder defines"
                        problem(text, role, "builders")
        if self.url is not None and not (isinstance(self.url, str) and self.url.startswith(("http://", "https://"))):
            problem(f"url must be an http:// or https:// address; got {self.url!r}", self, "url")
        hosts = self.allowed_hosts
        if not isinstance(hosts, (list, tuple)) or not all(isinstance(h, str) and h for h in hosts):
            problem(
                f'allowed_hosts must be a list of host names, such as ["ci.example.org"]; got {hosts!r}',
                self,
                "allowed_hosts",
            )
        if self.retention is not None:
            if not isinstance(self.retention, Retention):
                problem(f"retention must be a Retention; got {self.retention!r}", self, "retention")
            else:
                for name in self.retention.per_builder:
                    if name not in builder_names:
                        problem(
                            f"retention names builder {name!r}, which no builder defines", self.retention, "per_builder"
                        )
        self._check_curve(problem)
        if not errors:
            cycle = self._cycle()
            if cycle:
                problem("builders trigger each other in a cycle: " + " -> ".join(cycle), self.builder(cycle[0]))
        if errors:
            raise ConfigErrors(errors)

    def _codebase_problems(self) -> list[tuple[str, Any]]:
        """Git steps of a codebase nothing provides, and builders that check out two repositories as one codebase."""
        provided = {s.codebase for s in self.sources if isinstance(s, ChangeSource)}
        for scheduler in self.schedulers:
            if isinstance(scheduler, Scheduler):
                provided |= set(scheduler.codebases or ())
        found: list[tuple[str, Any]] = []
        for builder in self.builders:
            steps = [s for s in builder.steps if isinstance(s, Git)] if isinstance(builder, Builder) else []
            first: dict[str, Git] = {}
            for step in steps:
                if step.codebase and step.codebase not in provided:
                    text = f"builder {builder.name!r} checks out codebase {step.codebase!r}, which no source makes "
                    found.append((text + "changes of and no scheduler lists in its codebases", step))
                other = first.setdefault(step.codebase, step)
                urls = {str(other.repourl), str(step.repourl)}
                if isinstance(other.repourl, str) and isinstance(step.repourl, str) and len(urls) > 1:
                    text = (
                        f"builder {builder.name!r} checks out {other.repourl} and {step.repourl} as the same codebase "
                        f"{step.codebase!r}, so both would get one revision: give each Git step its own codebase=, "
                        "and each repository's source the same"
                    )
                    found.append((text, step))
        return found

    def _check_curve(self, problem: Callable[..., None]) -> None:
        """Read the master's CURVE key pair, and check the workers' public keys that go with it."""
        keyed: dict[str, Worker] = {}
        for worker in self.workers:
            if not isinstance(worker, Worker) or worker.public_key is None:
                continue
            try:
                check_key(worker.public_key)
            except KeyFileError as exc:
                problem(f"worker {worker.name!r}: public_key: {exc}", worker, "public_key")
                continue
            other = keyed.setdefault(worker.public_key, worker)
            if other is not worker:
                problem(
                    f"workers {other.name!r} and {worker.name!r} share a public_key; give each its own",
                    worker,
                    "public_key",
                )
        if self.curve_key is None:
            if keyed:
                first = next(iter(keyed.values()))
                problem(
                    f"worker {first.name!r} has a public_key, but the pipeline has no curve_key", first, "public_key"
                )
            return
        if not isinstance(self.curve_key, (str, Path)):
            problem(f"curve_key must be the path of a key file; got {self.curve_key!r}", self, "curve_key")
            return
        base = self.defined_at and self.defined_at.directory
        try:
            self.curve = load_key_pair(base / self.curve_key if base else self.curve_key)
        except KeyFileError as exc:
            problem(f"curve_key: {exc}", self, "curve_key")

    # -- the graph ------------------------------------------------------------------------------

    def edges(self) -> list[tuple[str, str, str]]:
        """Every edge as ``(from, to, label)``; nodes are ``source:``, ``scheduler:``, ``builder:`` and
        ``reporter:`` names."""
        edges = []
        takes_changes = [s for s in self.schedulers if type(s).classify is not Scheduler.classify]
        for source in self.sources:
            edges += [(f"source:{source.name}", f"scheduler:{s.name}", "changes") for s in takes_changes]
        for scheduler in self.schedulers:
            edges += [(f"scheduler:{scheduler.name}", f"builder:{b}", "requests") for b in scheduler.builders]
            if isinstance(scheduler, Dependent):
                edges += [(f"builder:{b}", f"scheduler:{scheduler.name}", "succeeds") for b in scheduler.upstream]
        for builder in self.builders:
            for step in builder.steps:
                if isinstance(step, Trigger):
                    label = "triggers and waits" if step.wait_for_finish else "triggers"
                    edges += [(f"builder:{builder.name}", f"scheduler:{s}", label) for s in step.schedulers]
        for reporter in self.reporters:
            label = "reports " + ", ".join(sorted(reporter.mode))
            followed = reporter.builders if reporter.builders is not None else [b.name for b in self.builders]
            edges += [(f"builder:{b}", f"reporter:{reporter.name}", label) for b in followed]
        return edges

    def _cycle(self) -> list[str] | None:
        """Builders that (through triggers and dependents) lead back to themselves, if any."""
        following: dict[str, set[str]] = {}
        for start, end, _ in self.edges():
            following.setdefault(start, set()).add(end)
        visiting: list[str] = []
        done: set[str] = set()

        def visit(node: str) -> list[str] | None:
            if node in visiting:
                loop = [*visiting[visiting.index(node) :], node]
                return [n.split(":", 1)[1] for n in loop if n.startswith("builder:")]
            if node in done:
                return None
            visiting.append(node)
            for nxt in sorted(following.get(node, ())):
                found = visit(nxt)
                if found:
                    return found
            visiting.pop()
            done.add(node)
            return None

        for builder in self.builders:
            found = visit(f"builder:{builder.name}")
            if found:
                return found
        return None

    # -- showing ------------------------------------------------------------------------------

    def describe(self) -> str:
        """The graph as text: its nodes, then its edges."""
        lines = ["Pipeline"]
        lines.append("  workers: " + (", ".join(w.name for w in self.workers) or "(none)"))
        if self.sources:
            lines.append("  sources: " + ", ".join(f"{s.name} ({type(s).__name__})" for s in self.sources))
        lines.append("  schedulers:")
        for s in self.schedulers:
            lines.append(f"    {s.name} ({type(s).__name__}) -> {', '.join(s.builders)}")
        lines.append("  builders:")
        for b in self.builders:
            locks = f" [locks: {', '.join(map(repr, b.locks))}]" if b.locks else ""
            cells = f" [matrix: {len(b.matrix)} cells of {' x '.join(b.matrix.axes)}]" if b.matrix else ""
            lines.append(f"    {b.name} on {', '.join(b.workers)}: {' -> '.join(b.step_names)}{locks}{cells}")
        edges = self.edges()
        if edges:
            lines.append("  edges:")
            lines += [f"    {start} -> {end} ({label})" for start, end, label in edges]
        if self.reporters:
            lines.append("  reporters:")
            for r in self.reporters:
                lines.append(f"    {r.name} <- {', '.join(r.builders) if r.builders else 'all builders'}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()

    def _repr_html_(self) -> str:
        """Jupyter shows a pipeline as its graph."""
        from .drawing import svg

        return svg(self)

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        printer.text(self.describe())

    def __repr__(self) -> str:
        return (
            f"Pipeline(workers={len(self.workers)}, schedulers={len(self.schedulers)}, builders={len(self.builders)})"
        )


def _cell_without_worker(matrix: Matrix, workers: list[Worker]) -> dict[str, Any] | None:
    """The first cell of ``matrix`` that none of ``workers`` may run."""
    return next((cell for cell in matrix if not any(fits(cell, w.properties) for w in workers)), None)
