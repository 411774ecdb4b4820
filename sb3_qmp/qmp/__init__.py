from sb3_qmp.mtsac.policies import MlpPolicy, MultiTaskSACPolicy
from sb3_qmp.qmp.mixtures import FixedMixtureCollector, UniformCollector
from sb3_qmp.qmp.qmp import QMP
from sb3_qmp.qmp.qswitch import QSwitchCollector
from sb3_qmp.qmp.qswitch_variants import AdaptiveQSwitchCollector, MarginQSwitchCollector
from sb3_qmp.qmp.variants import QMPDomain, QMPUniform

__all__ = [
    "QMP",
    "AdaptiveQSwitchCollector",
    "FixedMixtureCollector",
    "MarginQSwitchCollector",
    "MlpPolicy",
    "MultiTaskSACPolicy",
    "QMPDomain",
    "QMPUniform",
    "QSwitchCollector",
    "UniformCollector",
]
