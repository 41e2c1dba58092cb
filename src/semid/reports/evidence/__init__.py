"""The RQ-VAE study's evidence page (``docs/rq-vae-study.md``), from measured results only.

Sources: the quantizer benchmark's rows (``benchmarks/results/quantizers*.json``: the IDs
themselves), the results folder of ``semid grid grids/rq-vae-study.yaml --preset cpu`` (the
generator's downstream Recall@30 per quantizer, held-out targets' collisions, head/torso) and
optionally that of ``grids/paper-table3.yaml`` (the quantizers on the multitask space). The
settings the page states (generator size, epochs, beam, ID shape, catalogue) are read from the
cells' saved ``config.json`` and ``manifest.json``.

- :mod:`.collect`: the numbers, per row of the study;
- :mod:`.tables`: the page's markdown tables;
- :mod:`.prose`: sentences whose wording the comparisons decide;
- :mod:`.scale`: the catalogue-scale section, from a published ml-25m-scale study;
- :mod:`.page`: the page and its ``evidence.json`` (rewritable from a published folder alone).
"""

from semid.reports.evidence.page import rerender_evidence_page, write_evidence_page

__all__ = ["rerender_evidence_page", "write_evidence_page"]
