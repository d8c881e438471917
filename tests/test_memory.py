"""Training keeps big tensors on the heap: no fresh pages (page faults) for each step's
activations, and glibc's defaults again afterwards."""

import resource

import pytest
import torch

from siamese.training.memory import _glibc, heap_allocations

pytestmark = pytest.mark.skipif(_glibc() is None, reason="glibc's malloc only")


def _faults_of_steps(steps: int = 5, mib: int = 64) -> int:
    """Minor page faults of `steps` allocations of a big tensor, each written and freed."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
        x = torch.empty(mib * 2**18)  # floats: mib MiB
        x.fill_(1.0)
        del x
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def test_big_blocks_are_reused_within_and_mapped_afresh_outside():
    # (counted relative to each other: with transparent huge pages a fault maps 2 MiB)
    outside = _faults_of_steps()  # glibc's default: mmap'd, faulted in on every step
    with heap_allocations() as on:
        assert on
        _faults_of_steps(3)  # the heap grows (and may once more, if a small block splits it)
        within = _faults_of_steps()  # then the same memory serves the steps
    after = _faults_of_steps()  # big blocks are mapped afresh again
    assert outside >= 5 and after >= 5, (outside, after)
    assert within < min(outside, after) / 2, (outside, within, after)
