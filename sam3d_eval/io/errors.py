"""Errors raised when reading geometry files."""

from __future__ import annotations


class MeshLoadError(ValueError):
    """A mesh file could not be turned into a valid triangle mesh; the message names the file and the problem."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
