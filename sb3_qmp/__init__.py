"""sb3-qmp: multi-task RL with selective behavior sharing for Stable-Baselines3."""

from sb3_qmp import envs as _envs  # noqa: F401  (registers the gymnasium ids)
from sb3_qmp.common.multitask_env import MultiTaskWrapper
from sb3_qmp.common.normalize import VecNormalizePerTask
from sb3_qmp.common.vec_env import TaskAssignmentWrapper, make_multitask_vec_env
from sb3_qmp.dnc import DnC, DnCReg
from sb3_qmp.mtsac import MultiTaskSAC
from sb3_qmp.multihead import MultiHeadSAC, QMPMultiHead
from sb3_qmp.qmp import QMP, QMPDomain, QMPUniform
from sb3_qmp.separated import Separated
from sb3_qmp.shared import SharedSAC

__version__ = "0.1.0"

__all__ = [
    "QMP",
    "DnC",
    "DnCReg",
    "MultiHeadSAC",
    "MultiTaskSAC",
    "MultiTaskWrapper",
    "QMPDomain",
    "QMPMultiHead",
    "QMPUniform",
    "Separated",
    "SharedSAC",
    "TaskAssignmentWrapper",
    "VecNormalizePerTask",
    "__version__",
    "make_multitask_vec_env",
]
