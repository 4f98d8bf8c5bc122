"""Damped-least-squares inverse kinematics on MuJoCo's own Jacobians.

Why not an IK library: the task needs one point (the fingertip) at a position with the
jaw axis tilted toward the table, on a 5-joint arm, a few times per control step. MuJoCo
already gives exact site Jacobians from the compiled model (mj_jacSite), so a ~20-line
DLS loop on a private MjData is exact for this model, adds no dependency and costs
microseconds; a QP-based solver (mink) would add a dependency for constraints we can
enforce by clipping to the joint limits.
"""

from __future__ import annotations

import mujoco
import numpy as np

from rllib_paper.sim.scene import SceneIds

ARM_JOINTS = 5  # pan, lift, elbow, wrist flex, wrist roll; the gripper is not used for reaching


class FingertipIK:
    """Solve joint targets that put the fingertip at a point with a chosen jaw-axis direction."""

    def __init__(self, model: mujoco.MjModel, ids: SceneIds, damping: float = 1e-3, axis_weight: float = 0.05) -> None:
        self.model = model
        self.ids = ids
        self.data = mujoco.MjData(model)  # private scratch data: never touches the env's state
        self.damping = damping
        self.axis_weight = axis_weight
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))
        self._dofs = ids.joint_dof[:ARM_JOINTS]
        self._qadr = ids.joint_qpos[:ARM_JOINTS]
        self._low = model.jnt_range[[model.dof_jntid[d] for d in self._dofs], 0]
        self._high = model.jnt_range[[model.dof_jntid[d] for d in self._dofs], 1]

    def forward(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fingertip position and jaw axis (unit vector from wrist to tip) for joint angles q."""
        self.data.qpos[self.ids.joint_qpos[: len(q)]] = q
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_comPos(self.model, self.data)
        tip = self.data.site_xpos[self.ids.fingertip_site].copy()
        axis = -self.data.xmat[self.ids.gripper_body].reshape(3, 3)[:, 2]
        return tip, axis

    def solve(
        self,
        target: np.ndarray,
        q_init: np.ndarray,
        axis: np.ndarray | None = None,
        iterations: int = 30,
        tolerance: float = 2e-4,
    ) -> tuple[np.ndarray, float]:
        """Return (q, position error in metres). q has len(q_init) entries; only the arm moves."""
        q = np.array(q_init, dtype=float)
        error = np.inf
        for _ in range(iterations):
            tip, jaw = self.forward(q)
            err_p = target - tip
            error = float(np.linalg.norm(err_p))
            mujoco.mj_jacSite(self.model, self.data, self._jacp, self._jacr, self.ids.fingertip_site)
            jac = self._jacp[:, self._dofs]
            residual = err_p
            if axis is not None:
                # Align the jaw axis with `axis`: angular error is jaw x axis (small-angle).
                err_r = np.cross(jaw, axis)
                jac = np.vstack([jac, self.axis_weight * self._jacr[:, self._dofs]])
                residual = np.concatenate([err_p, self.axis_weight * err_r])
                if error < tolerance and np.linalg.norm(err_r) < 1e-2:
                    break
            elif error < tolerance:
                break
            jjt = jac @ jac.T + self.damping * np.eye(jac.shape[0])
            dq = jac.T @ np.linalg.solve(jjt, residual)
            q[:ARM_JOINTS] = np.clip(q[:ARM_JOINTS] + dq, self._low, self._high)
        return q, error


class TwoTipIK:
    """Place both jaw tips (sphere centres) at two points: the two-finger press.

    A single pressed point cannot turn a rigid sheet (the table's friction has no moment
    about the point when the press dominates the sheet's weight), two pressed points can.
    All six joints take part: the jaw opening sets the tips' spacing.
    """

    def __init__(self, model: mujoco.MjModel, ids: SceneIds, damping: float = 1e-4) -> None:
        self.model = model
        self.ids = ids
        self.data = mujoco.MjData(model)
        self.damping = damping
        self._jac = [np.zeros((3, model.nv)), np.zeros((3, model.nv))]
        self._dofs = ids.joint_dof
        self._low = model.jnt_range[[model.dof_jntid[d] for d in self._dofs], 0]
        self._high = model.jnt_range[[model.dof_jntid[d] for d in self._dofs], 1]
        self._geoms = ids.pad_geoms[:2]

    def forward(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.data.qpos[self.ids.joint_qpos] = q
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_comPos(self.model, self.data)
        return self.data.geom_xpos[self._geoms[0]].copy(), self.data.geom_xpos[self._geoms[1]].copy()

    def solve(
        self,
        target_a: np.ndarray,
        target_b: np.ndarray,
        q_init: np.ndarray,
        iterations: int = 30,
        tolerance: float = 3e-4,
    ) -> tuple[np.ndarray, float]:
        q = np.array(q_init, dtype=float)
        error = np.inf
        for _ in range(iterations):
            tip_a, tip_b = self.forward(q)
            residual = np.concatenate([target_a - tip_a, target_b - tip_b])
            error = float(np.abs(residual).max())
            if error < tolerance:
                break
            rows = []
            for geom, jac in zip(self._geoms, self._jac, strict=True):
                mujoco.mj_jac(
                    self.model, self.data, jac, None, self.data.geom_xpos[geom], int(self.model.geom_bodyid[geom])
                )
                rows.append(jac[:, self._dofs])
            jac = np.vstack(rows)
            dq = jac.T @ np.linalg.solve(jac @ jac.T + self.damping * np.eye(6), residual)
            q = np.clip(q + dq, self._low, self._high)
        return q, error
