"""``lucyd restore``: networks trained on synthetic data calibrated to the specimen, checked with physics."""

from lucyd.restore.calibration import Calibration, calibrate, calibrated_pairs, plan_training_set
from lucyd.restore.pipeline import RestoreConfig, RestoreResult, restore

__all__ = ["Calibration", "RestoreConfig", "RestoreResult", "calibrate", "calibrated_pairs",
           "plan_training_set", "restore"]
