from sb3_qmp.shared.policies import PAPER_SHARED_HIDDEN, MlpPolicy, SharedActor, SharedCritic, SharedSACPolicy
from sb3_qmp.shared.shared import PooledReplayBuffer, SharedSAC

__all__ = [
    "PAPER_SHARED_HIDDEN",
    "MlpPolicy",
    "PooledReplayBuffer",
    "SharedActor",
    "SharedCritic",
    "SharedSAC",
    "SharedSACPolicy",
]
