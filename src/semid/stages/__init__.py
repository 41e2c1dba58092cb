"""The pipeline's stages, one function each (orchestrated by :mod:`semid.pipeline`).

:mod:`~semid.stages.common` holds the state the stages share, :mod:`~semid.stages.inputs` the
data, splits, embeddings and ID stages, :mod:`~semid.stages.model` the generator's stages
(training-text vectors and the model) and :mod:`~semid.stages.evaluate` the scoring stages.
"""
