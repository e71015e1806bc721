"""Exceptions raised by lipopt. Every message says what was wrong and what is supported."""


class LipoptError(Exception):
    """Base class of lipopt's errors."""


class InvalidNetworkError(LipoptError, ValueError):
    """The network is malformed: shapes that do not chain, NaN/inf weights, bad layer options."""


class UnsupportedLayerError(LipoptError, ValueError):
    """The source model contains layers or nodes lipopt cannot represent (all are listed at once)."""

    def __init__(self, unsupported: list[str], supported: str, source: str = "model") -> None:
        self.unsupported = list(unsupported)
        lines = "\n".join(f"  - {u}" for u in self.unsupported)
        super().__init__(
            f"The {source} contains {len(self.unsupported)} unsupported layer(s)/node(s):\n{lines}\n"
            f"Supported: {supported}."
        )


class EquivalenceError(LipoptError):
    """An imported network does not reproduce its source (outputs or Jacobians differ)."""


class InvalidQuestionError(LipoptError, ValueError):
    """The question (norms, domain, output) is malformed or does not fit the network."""


class NotApplicableError(LipoptError):
    """A method cannot answer this question for this network (the message says why)."""


class CheckFailedError(LipoptError):
    """A self-check of a result failed (e.g. lower > upper)."""


class InvalidOptionsError(LipoptError, ValueError):
    """Run options that cannot work: an unknown solver, one without the capability a method needs,
    a non-positive thread count or time limit (see :func:`lipopt.validation.validate_options`)."""


class NoApplicableMethodError(NotApplicableError, ValueError):
    """None of the methods tried applies to the question (the message lists each with its reason)."""
