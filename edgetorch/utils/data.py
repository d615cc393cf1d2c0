"""Dataset, TensorDataset and DataLoader (torch.utils.data)."""
from __future__ import annotations

import numpy as np

from .._errors import EdgeTorchError
from ..random import Generator, _rng
from .._tensor import Tensor


class Dataset:
    def __getitem__(self, i):
        raise NotImplementedError

    def __len__(self):
        raise NotImplementedError


class TensorDataset(Dataset):
    """Samples are rows of the given tensors (all with the same first dim)."""

    def __init__(self, *tensors):
        n = {t.shape[0] for t in tensors}
        if len(n) != 1:
            raise EdgeTorchError(f"TensorDataset: tensors have different first dims {sorted(n)}")
        self.tensors = tensors

    def __getitem__(self, i):
        return tuple(t[i] for t in self.tensors)

    def __len__(self):
        return self.tensors[0].shape[0]


def default_collate(batch):
    """Stack samples: tuples and dicts are collated field by field."""
    first = batch[0]
    if isinstance(first, Tensor):
        return Tensor._wrap(np.stack([b._data for b in batch]))
    if isinstance(first, np.ndarray):
        return Tensor._wrap(np.stack(batch))
    if isinstance(first, (int, float, np.number)):
        return Tensor(np.asarray(batch))
    if isinstance(first, dict):
        return {k: default_collate([b[k] for b in batch]) for k in first}
    if isinstance(first, (tuple, list)):
        return type(first)(default_collate(list(col)) for col in zip(*batch)) if isinstance(first, tuple) \
            else [default_collate(list(col)) for col in zip(*batch)]
    return batch


class DataLoader:
    """Batches of a dataset; shuffle with a seeded `generator` for reproducible order.

    A TensorDataset is batched by fancy indexing (one copy per batch), not
    sample by sample.
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, collate_fn=None,
                 generator: Generator | None = None, num_workers=0):
        if batch_size is None or batch_size <= 0:
            raise EdgeTorchError(f"batch_size must be a positive int, got {batch_size}")
        self.dataset, self.batch_size, self.shuffle, self.drop_last = dataset, batch_size, shuffle, drop_last
        self.collate_fn = collate_fn or default_collate
        self.generator = generator

    def __len__(self):
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        n = len(self.dataset)
        order = _rng(self.generator).permutation(n) if self.shuffle else np.arange(n)
        for s in range(0, n, self.batch_size):
            idx = order[s:s + self.batch_size]
            if self.drop_last and len(idx) < self.batch_size:
                return
            if isinstance(self.dataset, TensorDataset) and self.collate_fn is default_collate:
                yield tuple(Tensor._wrap(t._data[idx]) for t in self.dataset.tensors)
            else:
                yield self.collate_fn([self.dataset[int(i)] for i in idx])
