"""Error types. Each subclasses the builtin a user would catch (ValueError), so both work."""


class SolverError(ValueError):
    """An integrator could not produce a solution (e.g. dopri5 step-size underflow)."""


class CheckpointError(ValueError):
    """A training checkpoint cannot be resumed: unreadable, or of another model, seed or length."""


def check_choice(name: str, value: object, choices) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")


def check_positive_int(name: str, value: object) -> int:
    """Return ``value`` if it is an int >= 1, else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= 1, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value
