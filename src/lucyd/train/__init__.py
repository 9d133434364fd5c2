"""Training and prediction for lucyd's networks (Li et al., Nature Methods 2022 for RLN).

* :class:`TrainConfig` and :func:`train` — the generic trainer (any registered network) that
  writes a model folder (``config.json``, ``model.json``, ``best.pt``, ``last.pt``,
  ``log.jsonl``, ``loss.png``).
* :func:`load_model` → :class:`RestorationModel` with ``.predict(array, tile_shape=...)``, and
  :func:`predict_file` for out-of-core Zarr / TIFF inputs; :class:`ModelCard` is ``model.json``
  (network, normalisation, training status).
* :data:`LOSSES` / :func:`register_loss` — the loss registry (``rln``, ``rln_local``, ``mae``, ``mse``,
  ``laplace_nll``, ``ddn``).
"""

from lucyd.train.card import FORMAT_VERSION, ModelCard
from lucyd.train.config import TrainConfig, network_recipe
from lucyd.train.loading import load_model, model_from_weights, predict_file
from lucyd.train.losses import LOSSES, get_loss, register_loss
from lucyd.train.model import (
    IncompleteModelWarning,
    RestorationModel,
    default_tile_shape,
    receptive_radius,
)
from lucyd.train.trainer import recalibrate_batch_norm, train

__all__ = [
    "TrainConfig",
    "network_recipe",
    "train",
    "recalibrate_batch_norm",
    "load_model",
    "model_from_weights",
    "RestorationModel",
    "predict_file",
    "default_tile_shape",
    "receptive_radius",
    "LOSSES",
    "get_loss",
    "register_loss",
    "FORMAT_VERSION",
    "ModelCard",
    "IncompleteModelWarning",
]
