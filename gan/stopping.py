"""Ctrl-C during training: stop after the step in flight."""
from __future__ import annotations


class StopAfterStep:
    """Ctrl-C during training stops after the step in flight, so the checkpoint saved then is
    exactly that step's state (a step cut in half would resume one batch off). A second Ctrl-C
    stops at once, keeping the last periodic checkpoint."""

    requested = False

    def __enter__(self):
        import signal
        import threading

        self._old = None
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        import signal

        if self.requested:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        import signal

        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False
