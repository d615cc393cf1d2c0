"""A small seeded fuzz campaign (tools/fuzz.py runs the large ones): mutated
programs must load and run or be refused with ProgramError/InputError; no
other exception, crash or hang."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))

import fuzz  # noqa: E402


def test_seeded_campaign_finds_nothing():
    totals, failures = fuzz.campaign(600, seed=1234, batch=300, timeout=300, log=lambda *a: None)
    assert not failures, failures[:5]
    assert totals["crashed"] == 0 and totals["hung"] == 0
    assert totals["ok"] + totals["rejected"] == 600
    assert totals["rejected"] > 300          # most mutants are caught, by the checks
    assert totals["ok"] > 10                 # and harmless ones still run


def test_mutator_is_deterministic():
    import numpy as np
    base = b"\x00" * 64 + bytes(range(64))
    a = fuzz.mutate(base, np.random.default_rng([1, 2]))
    b = fuzz.mutate(base, np.random.default_rng([1, 2]))
    assert a == b
