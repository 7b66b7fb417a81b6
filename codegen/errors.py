"""The one exception type for bad models and unsupported combinations."""


class ModelError(ValueError):
    """A model, method or option that sdekit cannot handle; the message names the culprit.

    Subclasses ``ValueError`` so callers that validate input generically still catch it.
    """
