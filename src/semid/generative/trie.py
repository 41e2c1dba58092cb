"""Prefix trie over fixed-length semantic IDs, stored as sorted arrays for vectorised lookups.

Nodes at depth ``t`` are the distinct prefixes of length ``t``; node 0 at depth 0 is the root.
For each depth we keep the sorted keys ``parent * width + code`` of every valid transition and
the child node it leads to, so both "which codes may follow this prefix" (a boolean mask) and
"which node does this code lead to" are ``searchsorted`` calls over whole beams at once.
"""

from __future__ import annotations

import numpy as np
import torch

from semid.errors import ConfigError


class PrefixTrie:
    """All valid ID prefixes of a catalogue (or of an allowed subset of it).

    Parameters
    ----------
    codes : ndarray of shape (n_items, n_cols)
        Integer codes of each item's ID.
    cardinalities : list of int
        Number of codes per column (the width of each level's token range).
    items : ndarray of shape (n_items,), optional
        Item index of each row of ``codes`` (default ``arange(n_items)``): pass a subset of
        rows together with their item indices to build a filtered trie.
    """

    def __init__(
        self,
        codes: np.ndarray,
        cardinalities: list[int],
        items: np.ndarray | None = None,
    ) -> None:
        codes = np.asarray(codes, dtype=np.int64)
        if codes.ndim != 2 or codes.shape[0] == 0:
            raise ConfigError("trie: codes must be a non-empty (n_items, n_cols) array")
        if len(cardinalities) != codes.shape[1]:
            raise ConfigError("trie: one cardinality per code column is required")
        if (codes < 0).any() or (codes >= np.asarray(cardinalities)).any():
            raise ConfigError("trie: a code is outside its column's cardinality")
        self.items = np.arange(len(codes)) if items is None else np.asarray(items, np.int64)
        self.cardinalities = [int(c) for c in cardinalities]
        self.depth = codes.shape[1]
        self._keys: list[torch.Tensor] = []
        self._children: list[torch.Tensor] = []
        parent = np.zeros(len(codes), dtype=np.int64)
        for col in range(self.depth):
            width = self.cardinalities[col]
            key = parent * width + codes[:, col]
            uniq, child = np.unique(key, return_inverse=True)
            self._keys.append(torch.from_numpy(uniq))
            self._children.append(torch.arange(len(uniq)))
            parent = child.reshape(-1)
        # Leaves: first row (lowest position) reaching each leaf gives the item; rows sharing
        # a full ID (no disambiguation) beyond the first are unreachable by decoding.
        n_leaves = len(self._keys[-1])
        leaf_item = np.full(n_leaves, -1, dtype=np.int64)
        order = np.arange(len(parent))[::-1]
        leaf_item[parent[order]] = self.items[order]
        self.leaf_item = torch.from_numpy(leaf_item)
        self.n_unreachable = int(len(codes) - n_leaves)

    def allowed_mask(self, nodes: torch.Tensor, col: int) -> torch.Tensor:
        """Boolean mask (len(nodes), cardinality[col]) of the codes valid after each node."""
        width = self.cardinalities[col]
        keys = self._keys[col]
        start = torch.searchsorted(keys, nodes * width)
        stop = torch.searchsorted(keys, (nodes + 1) * width)
        counts = stop - start
        rows = torch.repeat_interleave(torch.arange(len(nodes)), counts)
        first = torch.repeat_interleave(start - torch.cumsum(counts, 0) + counts, counts)
        flat = first + torch.arange(int(counts.sum()))
        mask = torch.zeros(len(nodes), width, dtype=torch.bool)
        mask[rows, keys[flat] - nodes[rows] * width] = True
        return mask

    def step(self, nodes: torch.Tensor, codes: torch.Tensor, col: int) -> torch.Tensor:
        """Child node reached from each node by each code (codes must be allowed)."""
        pos = torch.searchsorted(self._keys[col], nodes * self.cardinalities[col] + codes)
        return self._children[col][pos]

    def contains(self, codes: np.ndarray) -> np.ndarray:
        """Whether each full code row (n, n_cols) is a valid ID of this trie."""
        codes = torch.as_tensor(np.asarray(codes, dtype=np.int64))
        nodes = torch.zeros(len(codes), dtype=torch.long)
        ok = torch.ones(len(codes), dtype=torch.bool)
        for col in range(self.depth):
            key = nodes * self.cardinalities[col] + codes[:, col]
            keys = self._keys[col]
            pos = torch.searchsorted(keys, key).clamp(max=len(keys) - 1)
            ok &= keys[pos] == key
            nodes = torch.where(ok, self._children[col][pos], torch.zeros_like(nodes))
        return ok.numpy()
