from sb3_qmp.multihead.multihead import MultiHeadSAC, QMPMultiHead
from sb3_qmp.multihead.policies import MlpPolicy, MultiHeadActor, MultiHeadCritic, MultiHeadSACPolicy

__all__ = ["MlpPolicy", "MultiHeadActor", "MultiHeadCritic", "MultiHeadSAC", "MultiHeadSACPolicy", "QMPMultiHead"]
