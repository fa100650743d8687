"""Models shared by the functional tests (the seed's full example, and a few more)."""

from __future__ import annotations

from repocket import ActiveRecord, attributes


class Project(ActiveRecord):
    class Meta:
        namespace = "tests"

    name = attributes.Unicode()
    git_uri = attributes.Bytes()
    metadata = attributes.JSON()


class Build(ActiveRecord):
    class Meta:
        namespace = "tests"

    id = attributes.AutoUUID()
    project = attributes.Pointer(Project)
    started_at = attributes.DateTime()
    ended_at = attributes.DateTime()
    stdout = attributes.ByteStream()
    stderr = attributes.ByteStream()


class CompactBuild(ActiveRecord):
    class Meta:
        namespace = "tests"
        codec = "compact"

    project = attributes.Pointer(Project, null=True)
    number = attributes.Integer()
    stdout = attributes.ByteStream()


class Node(ActiveRecord):
    """Points at its own kind, for chains and cycles."""

    class Meta:
        namespace = "tests"

    label = attributes.Unicode()
    next = attributes.Pointer("self", null=True)


class Measure(ActiveRecord):
    class Meta:
        namespace = "tests"

    label = attributes.Unicode(null=True)
    count = attributes.Integer(default=7)
    ratio = attributes.Float()
    price = attributes.Decimal()
    at = attributes.DateTime(null=True)
    ref = attributes.UUID()
    data = attributes.JSON()
    blob = attributes.Bytes()
