"""Random number state: et.manual_seed and Generator (numpy PCG64 underneath)."""
import numpy as np


class Generator:
    """A seeded random stream, like torch.Generator."""

    def __init__(self, seed=None):
        self._rng = np.random.default_rng(seed)
        self._seed = seed

    def manual_seed(self, seed):
        self._rng = np.random.default_rng(seed)
        self._seed = seed
        return self

    def initial_seed(self):
        return self._seed

    def get_state(self):
        return self._rng.bit_generator.state

    def set_state(self, state):
        self._rng.bit_generator.state = state


default_generator = Generator(0)


def manual_seed(seed):
    """Seed the default generator (rand, randn, init, dropout, shuffling)."""
    default_generator.manual_seed(int(seed))
    return default_generator


def seed():
    s = int(np.random.SeedSequence().entropy % (2 ** 63))
    default_generator.manual_seed(s)
    return s


def _rng(generator=None):
    return (generator or default_generator)._rng
