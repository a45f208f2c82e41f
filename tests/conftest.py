import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


@pytest.fixture
def tiny_cfg():
    """A transformer small enough to train tens of steps in a second."""
    from jgrok.config import (ExperimentConfig, ModelConfig, SweepConfig, TaskConfig,
                              TrainConfig)

    return ExperimentConfig(
        task=TaskConfig(op="add", p=7),
        model=ModelConfig(kind="transformer", n_layers=1, d_model=16, n_heads=2),
        train=TrainConfig(steps=30, eval_every=10, checkpoint_every=10, batch_size=8),
        sweep=SweepConfig(seeds=(0, 1), fractions=(0.4, 0.7), weight_decays=(1.0,),
                          lrs=(1e-3,)))


def dataset_for(cfg):
    from jgrok.data.algorithmic import make_task
    from jgrok.data.split import dataset_from_task

    return dataset_from_task(make_task(cfg.task.op, cfg.task.p))
