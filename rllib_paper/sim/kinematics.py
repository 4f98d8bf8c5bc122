"""Damped-least-squares inverse kinematics on MuJoCo's own Jacobians.

Why not an IK library: the task needs one point (the fingertip) at a position with the
jaw axis tilted toward the table, on a 5-joint arm, a few times per control step. MuJoCo
already gives exact site Jacobians from the compiled model (mj_jacSite), so a ~20-line
DLS loop on a private MjData is exact for this model, adds no dependency and costs
microseconds; a QP-based solver (mink) would add a dependency for constraints we can
enforce by clipping to the joint limits.
"""

from __future__ import annotations

import math

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
        dofs = ids.joint_dof[:ARM_JOINTS]
        contiguous = bool(np.all(np.diff(dofs) == 1))
        self._dofs = slice(int(dofs[0]), int(dofs[-1]) + 1) if contiguous else dofs  # slices copy fastest
        self._qpos = ids.joint_qpos
        self._low = model.jnt_range[model.dof_jntid[dofs], 0]
        self._high = model.jnt_range[model.dof_jntid[dofs], 1]
        self._jac = np.zeros((6, ARM_JOINTS))
        self._residual = np.zeros(6)
        self._regulariser = damping * np.eye(6)
        self._solution = np.zeros(6)

    def forward(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fingertip position and jaw axis (unit vector from wrist to tip) for joint angles q."""
        self.data.qpos[self._qpos[: len(q)]] = q
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_comPos(self.model, self.data)
        tip = self.data.site_xpos[self.ids.fingertip_site]
        axis = -self.data.xmat[self.ids.gripper_body, 2::3]
        return tip, axis

    def solve(
        self,
        target: np.ndarray,
        q_init: np.ndarray,
        axis: np.ndarray | None = None,
        iterations: int = 30,
        tolerance: float = 2e-4,
        axis_tolerance: float = 1e-2,
    ) -> tuple[np.ndarray, float]:
        """Return (q, position error in metres). q has len(q_init) entries; only the arm moves.

        Runs every control step inside the scripted pusher, so the loop avoids numpy calls
        whose per-call overhead exceeds their arithmetic (np.cross, np.vstack, np.eye).
        """
        q = np.array(q_init, dtype=float)
        rows = 6 if axis is not None else 3
        jac, residual, regulariser = self._jac[:rows], self._residual[:rows], self._regulariser[:rows, :rows]
        weight = self.axis_weight
        error = math.inf
        for _ in range(iterations):
            tip, jaw = self.forward(q)
            dx, dy, dz = target[0] - tip[0], target[1] - tip[1], target[2] - tip[2]
            error = math.sqrt(dx * dx + dy * dy + dz * dz)
            residual[:3] = (dx, dy, dz)
            converged = error < tolerance
            if axis is not None:
                # Small-angle rotation taking the jaw axis onto `axis`: jaw x axis.
                ex = jaw[1] * axis[2] - jaw[2] * axis[1]
                ey = jaw[2] * axis[0] - jaw[0] * axis[2]
                ez = jaw[0] * axis[1] - jaw[1] * axis[0]
                residual[3:] = (weight * ex, weight * ey, weight * ez)
                converged = converged and ex * ex + ey * ey + ez * ez < axis_tolerance**2
            if converged:
                break
            jacr = self._jacr if axis is not None else None
            mujoco.mj_jacSite(self.model, self.data, self._jacp, jacr, self.ids.fingertip_site)
            jac[:3] = self._jacp[:, self._dofs]
            if axis is not None:
                jac[3:] = weight * self._jacr[:, self._dofs]
            # MuJoCo's own Cholesky on the small normal matrix: a tenth of np.linalg.solve's overhead.
            normal = jac @ jac.T + regulariser
            mujoco.mju_cholFactor(normal, 0.0)
            solution = self._solution[:rows]
            mujoco.mju_cholSolve(solution, normal, residual)
            dq = jac.T @ solution
            q[:ARM_JOINTS] = np.minimum(np.maximum(q[:ARM_JOINTS] + dq, self._low), self._high)
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
