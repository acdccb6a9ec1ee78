"""Exceptions that the CLI turns into one-line messages and a non-zero exit."""

from __future__ import annotations

from pathlib import Path


class AngiosegError(Exception):
    """Base class for errors caused by the user's input rather than by a bug."""


class DataError(AngiosegError):
    """A file or folder of input data is missing, unreadable or inconsistent.

    The message always names the file (or folder) and the problem.
    """

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path is not None else problem)


class CheckpointError(AngiosegError):
    """A checkpoint is not an angioseg checkpoint or does not match the model it is loaded into."""


class LeakageError(AngiosegError):
    """Images a model was (or would be) pretrained on are also test images."""
