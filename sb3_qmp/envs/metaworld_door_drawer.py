"""Meta-World door & drawer: four Sawyer manipulation tasks in one shared scene (the paper's Meta-World set).

One table holds a drawer (right, base ``x`` in ``[0.3, 0.4]``) and a door (left, base ``x`` in
``[-0.1, 0]``), built at run time from metaworld 3.1.1's own asset files (see
:mod:`sb3_qmp.envs.metaworld_scene`). Every task runs in the same scene, so the policy has to find out
from the task one-hot which object to handle. Positions are the authors' (SPEC 7), not metaworld's:

====  ============  ============================  ================================================  ================
task  name          reward & success (metaworld)  object placed at reset (its base position)        hand start
====  ============  ============================  ================================================  ================
0     door-open     ``SawyerDoorEnvV3``           door, closed; x in [-0.1, 0], y in [0.85, 0.95]   (0, 0.6, 0.2)
1     door-close    ``SawyerDoorCloseEnvV3``      door, open; same range                            (-0.6, 0.6, 0.2)
2     drawer-open   ``SawyerDrawerOpenEnvV3``     drawer, closed; x in [0.3, 0.4], y = 0.9          (0, 0.6, 0.2)
3     drawer-close  ``SawyerDrawerCloseEnvV3``    drawer, pulled out; same range                    (0, 0.6, 0.2)
====  ============  ============================  ================================================  ================

Each task is a subclass of metaworld's v3 class pointed at the combined model, with the object range
above (and door-close's hand start), so rewards, success and goals are metaworld's. The object a task
does not use stays closed where the scene puts it: the door at x = -0.1, the drawer at x = 0.4
(:data:`~sb3_qmp.envs.metaworld_scene.DOOR_POS`, :data:`~sb3_qmp.envs.metaworld_scene.DRAWER_POS`).

Observation (21 float32 numbers, no previous-frame copy; quaternions in MuJoCo's ``w, x, y, z`` order):

=======  ==========================================================
index    content
=======  ==========================================================
0:3      hand position (``hand`` body)
3        gripper opening in ``[0, 1]`` (metaworld's definition)
4:7      drawer handle position (drawer body + ``(0, -0.16, 0)``)
7:11     drawer quaternion
11:14    door handle position (``handle`` geom)
14:18    door handle quaternion
18:21    goal position of the current task
=======  ==========================================================

Each task has 50 object-position variations, drawn once from a generator seeded with
``(seed, task_id)`` (as metaworld's benchmarks fix their task lists), where ``seed`` is
``variation_seed`` (the run's seed) for ``variation_set="train"`` and ``variation_seed + 100`` for the
separate evaluation set ``variation_set="eval"`` (the authors' protocol); every reset picks one of them
with the env's ``np_random``.

Success: ``info["is_success"]`` is metaworld's success at the current step (strict: at the end of an
episode, success at its last step); ``info["success_any_step"]`` is True once it has been set at any
step of the episode (the authors' metric). Metaworld's own 500-step truncation is switched off: the
time limit (500 steps) comes from the gym registration of ``MetaWorldDoorDrawer-v0``.
"""

from __future__ import annotations

import pickle
import sys
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces
from metaworld.envs.sawyer_door_close_v3 import SawyerDoorCloseEnvV3
from metaworld.envs.sawyer_door_v3 import SawyerDoorEnvV3
from metaworld.envs.sawyer_drawer_close_v3 import SawyerDrawerCloseEnvV3
from metaworld.envs.sawyer_drawer_open_v3 import SawyerDrawerOpenEnvV3
from metaworld.sawyer_xyz_env import SawyerXYZEnv
from metaworld.types import Task

from sb3_qmp.common.checks import check_int
from sb3_qmp.common.multitask_env import MultiTaskWrapper, check_task_id
from sb3_qmp.envs.metaworld_scene import CAMERA_NAME, door_drawer_scene_path
from sb3_qmp.envs.variations import check_variation_set, variation_set_seed

TASK_NAMES = ["door-open", "door-close", "drawer-open", "drawer-close"]
#: Metaworld's name of every task's single-task env (and of its scripted policy).
METAWORLD_NAMES = ["door-open-v3", "door-close-v3", "drawer-open-v3", "drawer-close-v3"]
NUM_VARIATIONS = 50
OBS_DIM = 21

#: Range of the door's base position and of the drawer's base position, as in the authors' code
#: (SPEC 7): metaworld's door range moved 0.1 to the left, its drawer range moved to the right half of
#: the table, so that the two objects never touch.
DOOR_RANGE = (np.array([-0.1, 0.85, 0.15]), np.array([0.0, 0.95, 0.15]))
DRAWER_RANGE = (np.array([0.3, 0.9, 0.0]), np.array([0.4, 0.9, 0.0]))
#: Hand start of door-close (the authors' value; metaworld's is ``(-0.5, 0.6, 0.2)``). It lies 0.1 left of
#: the hand's action bounds: the first step pulls the hand back inside them, as in the authors' code.
DOOR_CLOSE_HAND_INIT = np.array([-0.6, 0.6, 0.2])


class _CombinedScene:
    """Mixin: load the combined door+drawer model instead of the task's own scene; own object range."""

    object_range: tuple[np.ndarray, np.ndarray]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[call-arg]  # metaworld's env
        # metaworld samples from this space when no variation is fixed: keep it the variations' range.
        self._random_reset_space = spaces.Box(*self.object_range, dtype=np.float64)

    @property
    def model_name(self) -> str:
        return door_drawer_scene_path()


def _handle_quat_xyzw(data: mujoco.MjData) -> np.ndarray:
    """The door handle's quaternion exactly as metaworld's door envs report it, without scipy's overhead.

    metaworld uses ``scipy.spatial.transform.Rotation.from_matrix(...).as_quat()``: ``(x, y, z, w)`` order,
    sign chosen so that the component picked from ``(m00, m11, m22, trace)`` by argmax is positive.
    """
    xmat = data.geom("handle").xmat
    wxyz = np.empty(4)
    mujoco.mju_mat2Quat(wxyz, xmat)
    xyzw = wxyz[[1, 2, 3, 0]]
    pick = int(np.argmax([xmat[0], xmat[4], xmat[8], xmat[0] + xmat[4] + xmat[8]]))
    return -xyzw if xyzw[pick] < 0 else xyzw


class DoorDrawerDoorOpenEnv(_CombinedScene, SawyerDoorEnvV3):  # type: ignore[misc]  # metaworld's own MRO
    """metaworld's door-open-v3 in the combined scene (door on the left half of the table)."""

    object_range = DOOR_RANGE

    def _get_quat_objects(self) -> np.ndarray:
        return _handle_quat_xyzw(self.data)


class DoorDrawerDoorCloseEnv(_CombinedScene, SawyerDoorCloseEnvV3):  # type: ignore[misc]  # metaworld's own MRO
    """metaworld's door-close-v3 in the combined scene, hand starting at :data:`DOOR_CLOSE_HAND_INIT`."""

    object_range = DOOR_RANGE

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Both: `_reset_hand` moves the hand to `hand_init_pos`, the reward's hand margin reads it too.
        self.hand_init_pos = DOOR_CLOSE_HAND_INIT.copy()
        self.init_config["hand_init_pos"] = DOOR_CLOSE_HAND_INIT.copy()

    def _get_quat_objects(self) -> np.ndarray:
        return _handle_quat_xyzw(self.data)


class DoorDrawerDrawerOpenEnv(_CombinedScene, SawyerDrawerOpenEnvV3):  # type: ignore[misc]  # metaworld's own MRO
    """metaworld's drawer-open-v3 in the combined scene (drawer on the right half of the table)."""

    object_range = DRAWER_RANGE


class DoorDrawerDrawerCloseEnv(_CombinedScene, SawyerDrawerCloseEnvV3):  # type: ignore[misc]  # metaworld's own MRO
    """metaworld's drawer-close-v3 in the combined scene (drawer on the right half of the table)."""

    object_range = DRAWER_RANGE


TASK_CLASSES: list[type[SawyerXYZEnv]] = [
    DoorDrawerDoorOpenEnv,
    DoorDrawerDoorCloseEnv,
    DoorDrawerDrawerOpenEnv,
    DoorDrawerDrawerCloseEnv,
]
TASK_RANGES = [DOOR_RANGE, DOOR_RANGE, DRAWER_RANGE, DRAWER_RANGE]


def task_variations(
    task_id: int, num_variations: int = NUM_VARIATIONS, variation_seed: int = 0, variation_set: str = "train"
) -> np.ndarray:
    """The ``(num_variations, 3)`` object base positions of a task.

    :param task_id: the task.
    :param num_variations: how many positions.
    :param variation_seed: the run's seed: the positions are drawn from
        ``np.random.default_rng([seed, task_id])`` with ``seed = variation_seed`` for the training set
        and ``variation_seed + 100`` for the evaluation set.
    :param variation_set: ``"train"`` or ``"eval"``.
    """
    task_id = check_task_id(task_id, len(TASK_NAMES))
    check_int("variation_seed", variation_seed, 0)
    low, high = TASK_RANGES[task_id]
    rng = np.random.default_rng([variation_set_seed(variation_seed, variation_set), task_id])
    return rng.uniform(low, high, size=(num_variations, 3))


_POLICY_NAMES = [
    "SawyerDoorOpenV3Policy",
    "SawyerDoorCloseV3Policy",
    "SawyerDrawerOpenV3Policy",
    "SawyerDrawerCloseV3Policy",
]


class ScriptedPolicy:
    """metaworld's scripted policy of a task, for the combined scene; call :meth:`reset` at every episode start.

    Door-open only: metaworld's policy runs after the hand has been lifted to ``lift_height``. With the door
    at the authors' x in ``[-0.1, 0]`` (metaworld's own range is ``[0, 0.1]``) the hand starts close to the
    handle, and metaworld's policy starts to descend (within 0.12 of the handle) before the hand is above
    the door: it lands on the door's top edge and stays there. That happens in metaworld's own single-task
    door-open-v3 scene as well (6 of 20 such door positions solved), so it is the policy's geometry, not
    the combined scene; lifting first lets the unchanged metaworld policy solve them. The other three
    tasks run metaworld's policy as it is.

    :param task_id: the task (index in ``TASK_NAMES``).
    :param lift_height: door-open: hand height (m) reached before metaworld's policy takes over.
    """

    def __init__(self, task_id: int, lift_height: float = 0.3) -> None:
        from metaworld import policies

        self.task_id = check_task_id(task_id, len(TASK_NAMES))
        self.policy = getattr(policies, _POLICY_NAMES[self.task_id])()
        self.lift_height = lift_height
        self._lifted = True
        self.reset()

    def reset(self) -> None:
        """Start of an episode (door-open: lift the hand first)."""
        self._lifted = self.task_id != 0

    def get_action(self, obs: np.ndarray) -> np.ndarray:
        """Action for metaworld's 39-number observation (:meth:`MetaWorldDoorDrawerEnv.metaworld_obs`)."""
        if not self._lifted:
            if obs[2] < self.lift_height:  # hand z
                return np.array([0.0, 0.0, 1.0, 1.0], dtype=np.float32)
            self._lifted = True
        return self.policy.get_action(obs)  # type: ignore[no-any-return]


def scripted_policy(task_id: int) -> ScriptedPolicy:
    """The scripted policy of a task (see :class:`ScriptedPolicy`); feed it
    :meth:`MetaWorldDoorDrawerEnv.metaworld_obs` and call its ``reset()`` at every episode start."""
    return ScriptedPolicy(task_id)


class MetaWorldDoorDrawerEnv(gym.Env):
    """Four Meta-World tasks (door open/close, drawer open/close) in one scene (see module docstring).

    :param task_id: initial task (changed with :meth:`set_task`, applied at the next reset).
    :param num_variations: object-position variations per task.
    :param variation_seed: seed of the per-task variation lists (fixed, like a benchmark's task list):
        set it to the run's seed to draw the lists as the authors did (one set per run).
    :param variation_set: ``"train"`` (lists drawn from ``variation_seed``) or ``"eval"`` (drawn from
        ``variation_seed + 100``: the authors' separate evaluation set). Give the evaluation env the
        training env's ``variation_seed`` and ``variation_set="eval"``.
    :param reward_function_version: metaworld's reward version (``"v2"``: the v3 envs' default).
    :param render_mode: ``"rgb_array"`` (offscreen MuJoCo; set ``MUJOCO_GL=egl`` on headless machines).
    :param camera_name: camera used by :meth:`render` (default: the scene's own upright view).
    :param width: image width of :meth:`render`.
    :param height: image height of :meth:`render`.
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 80}
    num_tasks = len(TASK_NAMES)
    task_names = TASK_NAMES
    #: Keys accepted in ``reset(options=...)``.
    RESET_OPTIONS = ("task_id", "variation")

    def __init__(
        self,
        task_id: int = 0,
        num_variations: int = NUM_VARIATIONS,
        variation_seed: int = 0,
        variation_set: str = "train",
        reward_function_version: str = "v2",
        render_mode: str | None = None,
        camera_name: str = CAMERA_NAME,
        width: int = 480,
        height: int = 480,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        if isinstance(num_variations, bool) or not isinstance(num_variations, int) or num_variations < 1:
            raise ValueError(f"num_variations must be a positive int, got {num_variations!r}")
        self.task_id = check_task_id(task_id, self.num_tasks)
        self.num_variations = num_variations
        self.variation_seed = variation_seed
        self.variation_set = check_variation_set(variation_set)
        #: The seed the variation lists are drawn from (``variation_seed``, + 100 for the eval set).
        self.variation_list_seed = variation_set_seed(variation_seed, variation_set)
        self.render_mode = render_mode
        self._env_kwargs: dict[str, Any] = {
            "reward_function_version": reward_function_version,
            "render_mode": render_mode,
            "camera_name": camera_name,
            "width": width,
            "height": height,
        }
        self.variations = [task_variations(i, num_variations, variation_seed, variation_set) for i in range(self.num_tasks)]
        # metaworld's own way to fix a task's object position: a pickled Task handed to `set_task`.
        self._mw_tasks = [
            [
                Task(
                    env_name=METAWORLD_NAMES[i],
                    data=pickle.dumps({"env_cls": TASK_CLASSES[i], "rand_vec": vec, "partially_observable": True}),
                )
                for vec in self.variations[i]
            ]
            for i in range(self.num_tasks)
        ]
        self._task_envs: list[SawyerXYZEnv | None] = [None] * self.num_tasks
        self._ids = (0, 0, 0)  # hand body, drawer_link body, door handle geom (same in every task's model)
        self._active: int | None = None  # task of the running episode
        self.variation: int | None = None
        self._mw_obs: np.ndarray | None = None
        self._success_any_step = False

        big = np.full(3, 2.0)
        hand = SawyerXYZEnv._HAND_SPACE
        # Widened to the door-close hand start, which lies outside metaworld's hand space.
        hand_low = np.minimum(hand.low, DOOR_CLOSE_HAND_INIT - 0.05)
        low = np.concatenate([hand_low, [0.0], -big, -np.ones(4), -big, -np.ones(4), -big])
        high = np.concatenate([hand.high, [1.0], big, np.ones(4), big, np.ones(4), big])
        self._obs_low, self._obs_high = low.astype(np.float32), high.astype(np.float32)
        self.observation_space = spaces.Box(self._obs_low, self._obs_high, dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)

    # ------------------------------------------------------------------ tasks
    def set_task(self, task_id: int) -> None:
        self.task_id = check_task_id(task_id, self.num_tasks)

    def task_env(self, task_id: int | None = None) -> SawyerXYZEnv:
        """The metaworld env that runs a task (default: the current episode's), built on first use."""
        i = self._active if task_id is None else check_task_id(task_id, self.num_tasks)
        if i is None:
            i = self.task_id
        env = self._task_envs[i]
        if env is None:
            env = TASK_CLASSES[i](**self._env_kwargs)
            env.max_path_length = sys.maxsize  # the gym TimeLimit truncates, not metaworld
            self._task_envs[i] = env
            model = env.model
            self._ids = (
                model.body("hand").id,
                model.body("drawer_link").id,
                model.geom("handle").id,
            )
        return env

    # ------------------------------------------------------------ observation
    def _observe(self, env: SawyerXYZEnv, mw_obs: np.ndarray) -> np.ndarray:
        data = env.data
        hand_id, drawer_id, handle_id = self._ids
        door_quat = np.empty(4)
        mujoco.mju_mat2Quat(door_quat, data.geom_xmat[handle_id])
        assert env._target_pos is not None
        obs = np.concatenate(
            [
                data.xpos[hand_id],
                mw_obs[3:4],
                data.xpos[drawer_id] + (0.0, -0.16, 0.0),
                data.xquat[drawer_id],
                data.geom_xpos[handle_id],
                door_quat,
                env._target_pos,
            ]
        ).astype(np.float32)
        return np.clip(obs, self._obs_low, self._obs_high)

    def metaworld_obs(self) -> np.ndarray:
        """The current observation in metaworld's 39-number single-task layout, goal filled in.

        That is the layout metaworld's scripted policies read (see :func:`scripted_policy`).
        """
        if self._mw_obs is None or self._active is None:
            raise RuntimeError("Call reset() before metaworld_obs().")
        obs = self._mw_obs.copy()
        obs[-3:] = self.task_env()._target_pos
        return obs

    # -------------------------------------------------------------- gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = sorted(set(options) - set(self.RESET_OPTIONS))
        if unknown:
            raise ValueError(
                f"Unknown reset option(s) {unknown}: MetaWorldDoorDrawerEnv.reset accepts {list(self.RESET_OPTIONS)}."
            )
        if "task_id" in options:
            self.set_task(options["task_id"])
        if "variation" in options:
            variation = check_variation(options["variation"], self.num_variations)
        else:
            variation = int(self.np_random.integers(self.num_variations))
        self._active = self.task_id
        self.variation = variation
        env = self.task_env()
        env.set_task(self._mw_tasks[self._active][variation])
        mw_obs, _ = env.reset()
        self._mw_obs = mw_obs
        self._success_any_step = False  # metaworld evaluates success at steps only; no task starts solved
        info = {
            "is_success": False,
            "success_any_step": False,
            "variation": variation,
            "task_name": TASK_NAMES[self._active],
        }
        return self._observe(env, mw_obs), info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self._active is None:
            raise RuntimeError("Call reset() before step().")
        action = np.asarray(action, dtype=np.float32)
        if action.shape != (4,):
            raise ValueError(f"action must have shape (4,) (dx, dy, dz, grip), got shape {action.shape}")
        env = self.task_env()
        mw_obs, reward, _, _, info = env.step(np.clip(action, -1.0, 1.0))
        self._mw_obs = mw_obs
        success = bool(info["success"])
        self._success_any_step = self._success_any_step or success
        info["is_success"] = success  # strict: success at this step (read at the last step of an episode)
        info["success_any_step"] = self._success_any_step  # the authors' metric: success at any step so far
        return self._observe(env, mw_obs), float(reward), False, False, info

    def render(self) -> np.ndarray | None:  # type: ignore[override]
        if self.render_mode is None:
            return None
        return self.task_env().render()  # type: ignore[no-any-return]

    def close(self) -> None:
        for env in self._task_envs:
            if env is not None:
                env.close()
        self._task_envs = [None] * self.num_tasks


def check_variation(variation: Any, num_variations: int) -> int:
    """Validate a variation index (``reset(options={"variation": k})``)."""
    if isinstance(variation, (bool, np.bool_)) or not isinstance(variation, (int, np.integer)):
        raise TypeError(f"variation must be an int in [0, {num_variations - 1}], got {variation!r}")
    if not 0 <= int(variation) < num_variations:
        raise ValueError(f"variation={variation} is out of range: valid 0..{num_variations - 1}")
    return int(variation)


def make_env(task_id: int | None = None, **kwargs: Any) -> MultiTaskWrapper:
    """Entry point of ``MetaWorldDoorDrawer-v0``: the base env with the one-hot task suffix.

    :param task_id: fixed task, or ``None`` to draw a task per episode.
    :param kwargs: passed to :class:`MetaWorldDoorDrawerEnv`.
    """
    return MultiTaskWrapper(MetaWorldDoorDrawerEnv(**kwargs), task_id=task_id)
