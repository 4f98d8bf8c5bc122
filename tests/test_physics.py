"""Physics validation: the seed report's checks, read from the compiled model, plus contact behaviour."""

import math

import mujoco
import numpy as np
import pytest

from rllib_paper.bench.env import press_target
from rllib_paper.config import DR_PRESETS, EnvConfig, PhysicsConfig, TaskConfig
from rllib_paper.envs.residual import ResidualPaperEnv
from rllib_paper.policies.base import ConstantTargetPolicy
from rllib_paper.sim.observation import FINGERTIP, SHEET_XY
from rllib_paper.sim.scene import BIT_ARM, BIT_PAD, BIT_PAPER, BIT_STATIC, SceneIds, build_model


def test_model_loads_with_robot_and_task_objects(default_model):
    model, ids = default_model
    assert model.nu == 6 and len(ids.joint_qpos) == 6
    assert model.opt.timestep == pytest.approx(0.001)
    assert PhysicsConfig().substeps == 33
    names = {model.camera(i).name for i in range(model.ncam)}
    assert {"top_view", "so101/wrist_view"} <= names
    # The top view frames the arm, the frame and the start box (62 deg); the wrist keeps the seed's lens.
    assert model.cam_fovy[ids.top_camera] == pytest.approx(62.0)
    assert model.cam_fovy[ids.wrist_camera] == pytest.approx(140.0)
    assert model.nlight == 3


def test_paper_numbers(default_model):
    model, ids = default_model
    size = model.geom_size[ids.paper_geom]
    assert size[2] == pytest.approx(0.000075)
    assert 2 * size[0] == pytest.approx(0.148) and 2 * size[1] == pytest.approx(0.210)
    assert model.body_mass[ids.paper_body] == pytest.approx(0.005)
    assert model.geom_friction[ids.paper_geom] == pytest.approx([0.60, 0.002, 0.0001])
    assert model.geom_condim[ids.paper_geom] == 3
    assert model.geom_solref[ids.paper_geom] == pytest.approx([0.005, 1.0])
    assert model.geom_solimp[ids.paper_geom][:3] == pytest.approx([0.9, 0.95, 0.001])


def test_tape_is_stickier_than_table(default_model):
    model, ids = default_model
    table = model.geom_friction[ids.table_geoms, 0]
    assert table == pytest.approx(np.full(len(table), 0.30))
    tape = model.geom_friction[ids.tape_geoms, 0]
    assert tape == pytest.approx(np.full(4, 0.90))
    assert tape.min() > table.max()
    # The surfaces win friction mixing (priority), so paper-table contacts really use 0.30.
    assert (model.geom_priority[ids.tape_geoms] > model.geom_priority[ids.paper_geom]).all()
    assert (model.geom_priority[ids.table_geoms] > model.geom_priority[ids.paper_geom]).all()
    # Sticky strips lie exactly under the 20 mm tape around the A5 inner area.
    widths = sorted(float(2 * min(model.geom_size[g][:2])) for g in ids.tape_geoms)
    assert widths == pytest.approx([0.020] * 4)
    # Table and tape tiles are coplanar at z = 0, so the sheet never meets an edge.
    tops = [model.geom_pos[g][2] + model.geom_size[g][2] for g in [*ids.table_geoms, *ids.tape_geoms]]
    frame_z = 0.0
    assert np.allclose(tops, frame_z, atol=1e-9)


def test_only_the_two_fingertip_spheres_and_forearm_hulls_collide(default_model):
    model, ids = default_model
    arm_colliders = [
        g
        for g in range(model.ngeom)
        if model.body(int(model.geom_bodyid[g])).name.startswith("so101/")
        and (model.geom_contype[g] or model.geom_conaffinity[g])
    ]
    bodies = {model.body(int(model.geom_bodyid[g])).name for g in arm_colliders}
    assert bodies == {"so101/upper_arm", "so101/lower_arm", "so101/gripper", "so101/moving_jaw_so101_v1"}
    jaw_colliders = [
        g
        for body in ("so101/gripper", "so101/moving_jaw_so101_v1")
        for g in arm_colliders
        if model.body(int(model.geom_bodyid[g])).name == body
    ]
    # The jaws touch the world through exactly the two 4 mm spheres, one per jaw, and nothing else.
    assert [model.geom(g).name for g in jaw_colliders] == ["so101/fingertip", "so101/moving_fingertip"]
    assert sorted(jaw_colliders) == sorted(int(g) for g in ids.pad_geoms) and ids.fingertip_geom == jaw_colliders[0]
    for g in jaw_colliders:
        assert int(model.geom_type[g]) == int(mujoco.mjtGeom.mjGEOM_SPHERE)
        assert model.geom_size[g][0] == pytest.approx(0.004)
        assert model.geom_contype[g] == BIT_PAD and model.geom_conaffinity[g] == BIT_STATIC | BIT_PAPER
        assert model.geom_conaffinity[g] & model.geom_contype[ids.paper_geom]
    # The package's box jaw pads stay inert: a tilted box corner reaches below the tip.
    for name in ("so101/fixed_jaw_pad", "so101/moving_jaw_pad"):
        pad = model.geom(name).id
        assert int(model.geom_type[pad]) == int(mujoco.mjtGeom.mjGEOM_BOX)
        assert model.geom_contype[pad] == 0 and model.geom_conaffinity[pad] == 0
    for g in set(arm_colliders) - set(jaw_colliders):  # forearm hulls may touch the table, never the sheet
        assert int(model.geom_type[g]) == int(mujoco.mjtGeom.mjGEOM_MESH)
        assert model.geom_contype[g] == BIT_ARM and model.geom_conaffinity[g] == BIT_STATIC
        assert not model.geom_contype[g] & model.geom_conaffinity[ids.paper_geom]
        assert not model.geom_conaffinity[g] & model.geom_contype[ids.paper_geom]


def test_1000_steps_stable_and_resting_paper_does_not_sink():
    env = ResidualPaperEnv(EnvConfig(randomization=DR_PRESETS["phase2"]))
    env.reset(seed=11)
    data, ids = env.env.data, env.env.ids
    half = env.config.physics.paper_half_thickness
    worst = 0.0
    for _ in range(1000):
        mujoco.mj_step(env.env.model, data)
        assert np.isfinite(data.qpos).all() and np.isfinite(data.qvel).all()
        worst = min(worst, data.qpos[ids.paper_qpos + 2] - half)
        for i in range(data.ncon):
            if ids.paper_geom in (data.contact.geom1[i], data.contact.geom2[i]):
                worst = min(worst, data.contact.dist[i])
    assert worst > -1e-4, f"paper sank {-worst * 1e3:.3f} mm into the table"


def _pressing_env(paper_xy, depth=0.004):
    config = EnvConfig(task=TaskConfig(max_steps=10_000), randomization=DR_PRESETS["none"])
    env = ResidualPaperEnv(config)
    env.reset(seed=0)
    env.base_policy = ConstantTargetPolicy(press_target(env, np.asarray(paper_xy), depth))
    env.reset(seed=0)
    return env


def test_fingertip_pressed_on_paper_and_moved_drags_it():
    env = _pressing_env((0.30, 0.0))
    zero = np.zeros(6, dtype=np.float32)
    for _ in range(45):
        env.step(zero)
    start = env.env.state[SHEET_XY].copy()
    # Pressing with the fingertip still on the sheet must not move it much.
    assert np.linalg.norm(start - np.array([0.30, 0.0])) < 0.01
    # Now drag the fingertip 6 cm toward the robot while keeping it pressed.
    for x in np.linspace(0.30, 0.24, 60):
        env.base_policy = ConstantTargetPolicy(press_target(env, np.array([x, 0.0])))
        env.step(zero)
    for _ in range(15):
        env.step(zero)
    moved = env.env.state[SHEET_XY] - start
    assert moved[0] < -0.04, f"sheet moved only {moved * 100} cm while dragged 6 cm"
    assert abs(moved[1]) < 0.02
    tip = env.env.state[FINGERTIP]
    assert tip[2] > -1e-3, "fingertip went through the table"


def _shove(xy, yaw, velocity):
    """Slide distance of a free sheet given the same initial velocity, arm parked at home."""
    model = build_model()
    ids = SceneIds.from_model(model)
    data = mujoco.MjData(model)
    data.qpos[ids.joint_qpos] = TaskConfig().home_qpos
    data.ctrl[ids.actuators] = TaskConfig().home_qpos
    data.qpos[ids.paper_qpos : ids.paper_qpos + 7] = (*xy, 0.000075, math.cos(yaw / 2), 0, 0, math.sin(yaw / 2))
    mujoco.mj_step(model, data, nstep=100)
    before = data.qpos[ids.paper_qpos : ids.paper_qpos + 2].copy()
    data.qvel[ids.paper_dof : ids.paper_dof + 2] = velocity
    mujoco.mj_step(model, data, nstep=1000)
    return float(np.linalg.norm(data.qpos[ids.paper_qpos : ids.paper_qpos + 2] - before))


def test_same_push_slides_less_on_tape():
    shove = (0.0, 0.3)  # 0.3 m/s along y, along the frame's long tape strips
    on_table = _shove((0.40, 0.25), 0.0, shove)
    # Turned a quarter turn over the frame, the sheet's two ends rest on both long strips.
    on_tape = _shove((0.16, 0.0), math.pi / 2, shove)
    expected_table = 0.3**2 / (2 * 0.30 * 9.81)  # v^2 / (2 mu g) = 15 mm on bare table
    assert on_table == pytest.approx(expected_table, rel=0.2)
    assert on_tape < 0.8 * on_table, f"slid {on_tape * 1e3:.1f} mm over the tape, {on_table * 1e3:.1f} mm on table"


def test_an_env_without_visual_meshes_has_the_same_physics_to_the_bit():
    """Envs that render nothing leave out the arm's visual meshes (a quarter of the memory), and
    camera-fed ones draw simplified copies (render_detail): every observation, reward and
    contact of a pushing episode must stay the same."""
    from rllib_paper.config import coerce_env_config
    from rllib_paper.envs.paper_env import PaperSquareEnv
    from rllib_paper.policies.scripted import ScriptedPusher

    config = coerce_env_config(None, dr="phase2")
    full, lean = PaperSquareEnv(config, visual=True), PaperSquareEnv(config, visual=False)
    simplified = PaperSquareEnv(config, visual=True, render_detail=0.1)
    assert lean.model.nmeshvert < full.model.nmeshvert / 2
    assert simplified.model.nmeshface < full.model.nmeshface
    envs = (full, lean, simplified)
    trajectories = []
    for env in envs:
        pusher = ScriptedPusher(config)
        obs, _ = env.reset(seed=1029)
        pusher.reset(seed=1029)
        rows = [obs]
        for _ in range(120):
            action = pusher.act({"state": env.state[None], "target": env.current_target[None]})[0, 0]
            obs, reward, terminated, truncated, _ = env.step(action)
            rows.append(np.concatenate([obs, [reward], env.data.qpos, env.data.qvel, [env.data.ncon]]))
            if terminated or truncated:
                break
        trajectories.append(rows)
    for other in trajectories[1:]:
        assert len(other) == len(trajectories[0])
        for a, b in zip(trajectories[0], other, strict=True):
            np.testing.assert_array_equal(a, b)
