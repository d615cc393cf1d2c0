"""Grad mode: whether ops record history for backward."""
import functools
import threading


class _State(threading.local):
    def __init__(self):
        self.enabled = True


_state = _State()


def is_grad_enabled():
    return _state.enabled


def set_grad_enabled(mode):
    _state.enabled = bool(mode)


class _Mode:
    _target = True

    def __enter__(self):
        self._prev = _state.enabled
        _state.enabled = self._target

    def __exit__(self, *exc):
        _state.enabled = self._prev
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*a, **k):
            with self.__class__():
                return fn(*a, **k)
        return wrapper


class no_grad(_Mode):
    """Context manager / decorator: ops inside record no history.

    >>> with et.no_grad():
    ...     y = model(x)        # y.requires_grad is False
    """
    _target = False


class enable_grad(_Mode):
    """Context manager / decorator: turn recording back on inside no_grad."""
    _target = True


class inference_mode(no_grad):
    """Alias of no_grad (edgetorch has no separate inference tensors)."""
