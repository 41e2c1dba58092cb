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
        paths = []  # node of every row at depth col + 1
        parent = np.zeros(len(codes), dtype=np.int64)
        for col in range(self.depth):
            width = self.cardinalities[col]
            key = parent * width + codes[:, col]
            uniq, child = np.unique(key, return_inverse=True)
            self._keys.append(torch.from_numpy(uniq))
            self._children.append(torch.arange(len(uniq)))
            parent = child.reshape(-1)
            paths.append(parent)
        # Leaves: first row (lowest position) reaching each leaf gives the item; rows sharing
        # a full ID (no disambiguation) beyond the first are unreachable by decoding.
        n_leaves = len(self._keys[-1])
        leaf_item = np.full(n_leaves, -1, dtype=np.int64)
        order = np.arange(len(parent))[::-1]
        leaf_item[parent[order]] = self.items[order]
        self.leaf_item = torch.from_numpy(leaf_item)
        self.n_unreachable = int(len(codes) - n_leaves)
        # For ban lists: the ancestor of every leaf at each depth, and leaves under each node.
        leaf_rows = np.full(n_leaves, -1, dtype=np.int64)
        leaf_rows[parent[order]] = order
        self._leaf_ancestors = [path[leaf_rows] for path in paths]
        self._leaf_counts = [
            np.bincount(anc, minlength=len(k))
            for anc, k in zip(self._leaf_ancestors, self._keys, strict=True)
        ]
        item_order = np.argsort(self.items, kind="stable")
        self._sorted_items = self.items[item_order]
        self._row_of_sorted = item_order
        self._leaf_of_row = parent

    def leaves_of(self, items: np.ndarray) -> np.ndarray:
        """Leaf node that decodes to each item (-1 for items absent or not reachable)."""
        items = np.asarray(items, dtype=np.int64)
        pos = np.searchsorted(self._sorted_items, items).clip(max=len(self._sorted_items) - 1)
        found = self._sorted_items[pos] == items
        leaf = np.where(found, self._leaf_of_row[self._row_of_sorted[pos]], -1)
        ok = leaf >= 0
        ok[ok] = self.leaf_item.numpy()[leaf[ok]] == items[ok]
        return np.where(ok, leaf, -1)

    def banned_transitions(
        self, banned: list[np.ndarray]
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per depth, the (input row, parent node, code) transitions a ban list forbids.

        ``banned[r]`` are the items input ``r`` may not return (e.g. its history). A
        transition is forbidden when every leaf below the node it leads to is banned, so a
        banned item never takes a beam at any depth, and subtrees that hold only banned items
        are cut as early as possible.
        """
        rows = np.concatenate(
            [np.full(len(b), r, dtype=np.int64) for r, b in enumerate(banned)]
            or [np.zeros(0, np.int64)]
        )
        items = np.concatenate([np.asarray(b, np.int64) for b in banned] or [np.zeros(0, np.int64)])
        leaves = self.leaves_of(items) if len(items) else items
        rows, leaves = rows[leaves >= 0], leaves[leaves >= 0]
        pairs = np.unique(np.stack([rows, leaves], axis=1), axis=0) if len(rows) else None
        out: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for col in range(self.depth):
            if pairs is None:
                empty = np.zeros(0, np.int64)
                out.append((empty, empty, empty))
                continue
            nodes = self._leaf_ancestors[col][pairs[:, 1]]
            n_nodes = len(self._keys[col])
            keys, counts = np.unique(pairs[:, 0] * n_nodes + nodes, return_counts=True)
            node = keys % n_nodes
            full = counts == self._leaf_counts[col][node]
            node, row = node[full], keys[full] // n_nodes
            key = self._keys[col].numpy()[node]
            width = self.cardinalities[col]
            out.append((row, key // width, key % width))
        return out

    def n_nodes(self, depth: int) -> int:
        """Number of distinct prefixes of length ``depth`` (1 for the root)."""
        return 1 if depth == 0 else len(self._keys[depth - 1])

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
        rows = torch.as_tensor(np.asarray(codes, dtype=np.int64))
        nodes = torch.zeros(len(rows), dtype=torch.long)
        ok = torch.ones(len(rows), dtype=torch.bool)
        for col in range(self.depth):
            key = nodes * self.cardinalities[col] + rows[:, col]
            keys = self._keys[col]
            pos = torch.searchsorted(keys, key).clamp(max=len(keys) - 1)
            ok &= keys[pos] == key
            nodes = torch.where(ok, self._children[col][pos], torch.zeros_like(nodes))
        return ok.numpy()
