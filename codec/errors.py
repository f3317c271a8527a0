"""Errors a user can cause. The CLI prints their one-line message and exits non-zero."""


class CodecError(Exception):
    """Base class for every error caused by user input (files, arguments, models)."""


class AudioError(CodecError):
    """An audio file is missing, unreadable, empty, or holds non-finite samples."""


class FormatError(CodecError):
    """A `.codes` file is truncated, corrupt, of a newer version, or not a `.codes` file."""


class ModelMismatchError(CodecError):
    """A `.codes` file was written by a different model than the one asked to decode it."""


class ModelNotFoundError(CodecError):
    """No pretrained model of that name, nor a model directory at that path."""


class ConfigError(CodecError):
    """A config or recipe has an unknown key or a value of the wrong type."""
