"""Training: one seed (:func:`fit`), several seeds (:func:`train_seeds`), the ablation arms
(:func:`run_ablation`), paired statistics, checkpoints and seeding. Command line: :mod:`.cli`."""
from .ablate import ARMS, arm_config, run_ablation
from .config import TrainConfig
from .results import format_table, results_doc, summarize
from .runner import SYNTHETIC_SCALES, load_data, train_seeds
from .seeding import DEFAULT_SEEDS, seed_everything
from .stats import bootstrap_ci, paired_comparison
from .trainer import TrainingInterrupted, evaluate, fit

__all__ = ["ARMS", "arm_config", "run_ablation", "TrainConfig", "format_table", "results_doc", "summarize",
           "SYNTHETIC_SCALES", "load_data", "train_seeds", "DEFAULT_SEEDS", "seed_everything", "bootstrap_ci",
           "paired_comparison", "TrainingInterrupted", "evaluate", "fit"]
