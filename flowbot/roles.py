"""Roles: who may do what to which builders, given to :class:`~flowbot.auth.Auth`.

Without roles, anyone the master knows (a user, a token, someone logged in through single sign-on)
may do everything. With roles, an action is allowed only when a role that names the person (by user
name, or by one of their groups) grants it, for the builder concerned when the action concerns
one::

    Auth(users=..., oidc=OpenIDConnect(...), roles=[
        Role("developers", groups=["dev"], may=["force", "stop"], builders=["unit", "docs"]),
        Role("release", users=["alice"], may=["force", "stop", "approve"], builders=["release"]),
        Role("admins", groups=["ci-admins"], may=["force", "stop", "approve", "pause", "reconfigure"]),
    ])

Reading is no action: who may read is ``Auth(read=...)``'s to say.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from .errors import ConfigError
from .location import caller


class Permission(StrEnum):
    """What a role may allow."""

    #: force a build, and rebuild one
    FORCE = "force"
    #: stop a running build, and cancel a waiting request
    STOP = "stop"
    #: approve or reject a build that waits for a person
    APPROVE = "approve"
    #: pause, unpause and shut down workers
    PAUSE = "pause"
    #: apply an edited pipeline
    RECONFIGURE = "reconfigure"
    #: send changes (``flowbot sendchange``, ``POST /api/changes``)
    SENDCHANGE = "sendchange"


#: The permissions that concern one builder at a time (a role may limit them to some builders).
PER_BUILDER = frozenset({Permission.FORCE, Permission.STOP, Permission.APPROVE})


class Role:
    """A role: the people it names, what it allows them, and on which builders.

    Args:
        name: shown in refusals and logs.
        users: user names (local users, token names, or the names single sign-on gives).
        groups: group names (from single sign-on's groups claim or the proxy's groups header).
        may: the permissions granted: ``"force"``, ``"stop"``, ``"approve"``, ``"pause"``,
            ``"reconfigure"``, ``"sendchange"``.
        builders: the builders ``force``, ``stop`` and ``approve`` apply to (None: all of them).

    Raises:
        ConfigError: an unknown permission, a role that names nobody or allows nothing, or
            ``builders`` with no permission that concerns builders.
    """

    def __init__(
        self,
        name: str,
        *,
        users: Iterable[str] = (),
        groups: Iterable[str] = (),
        may: Iterable[str] = (),
        builders: Iterable[str] | None = None,
    ):
        self.defined_at = caller()
        self.name = name
        self.users = frozenset([users] if isinstance(users, str) else users)
        self.groups = frozenset([groups] if isinstance(groups, str) else groups)
        self.builders = None if builders is None else frozenset([builders] if isinstance(builders, str) else builders)
        asked = [may] if isinstance(may, str) else list(may)
        known = [p.value for p in Permission]
        unknown = [p for p in asked if p not in known]
        if unknown:
            self._refuse(f"role {name!r} may {unknown[0]!r}, which is no permission; use {', '.join(known)}")
        self.may = frozenset(Permission(p) for p in asked)
        if not isinstance(name, str) or not name:
            self._refuse(f"a role needs a name, not {name!r}")
        if not self.may:
            self._refuse(f"role {name!r} allows nothing: give may=[...]")
        if not self.users and not self.groups:
            self._refuse(f"role {name!r} names nobody: give users=[...] or groups=[...]")
        for what in (*self.users, *self.groups, *(self.builders or ())):
            if not isinstance(what, str) or not what:
                self._refuse(f"role {name!r}: users, groups and builders are non-empty names, not {what!r}")
        if self.builders is not None and not self.may & PER_BUILDER:
            self._refuse(
                f"role {name!r} names builders, but {', '.join(sorted(p.value for p in self.may))} "
                "concern no builder (only force, stop and approve do)"
            )

    def _refuse(self, problem: str) -> None:
        where = self.defined_at
        raise ConfigError(problem, where and where.filename, where and where.lineno)

    def grants(self, user: str, groups: Iterable[str], permission: Permission, builder: str | None) -> bool:
        """Whether this role lets ``user`` (in ``groups``) do ``permission`` (to ``builder``)."""
        if permission not in self.may or not (user in self.users or self.groups.intersection(groups)):
            return False
        return permission not in PER_BUILDER or self.builders is None or builder in self.builders

    def __repr__(self) -> str:
        return f"Role({self.name!r}, may={sorted(p.value for p in self.may)})"
