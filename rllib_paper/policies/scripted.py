"""The scripted pusher: a closed-loop press-and-drag controller on the 25-D observation.

How it moves the sheet. The fingertip presses the sheet (a few newtons) and drags it;
a single pressed point holds the sheet in translation but lets it pivot (a point contact
has no torsional grip), and a sheet dragged by a point swings until its centre trails
the finger along the direction of motion, like a trailer behind a car. So we choose the
press point to make that swing end in the right orientation: to pull the sheet along
direction u and finish with yaw 0 (mod pi), press at the material point whose offset
from the centre, in the aligned sheet's frame, is r * u. Pulling it along u then
translates the sheet toward the frame *and* turns it into alignment, and the pull
direction is re-aimed at the frame every control step (closed loop). When the sheet is
near the frame but still turned, a pivot stroke presses near one end of the long axis
and sweeps it around the centre. Between strokes the tip lifts, re-plans from the
latest observation and re-approaches; it holds still once the sheet is inside.

Inverse kinematics: damped least squares on MuJoCo's own Jacobians (sim/kinematics.py),
warm-started from the previous solution, so each step costs a few Jacobian evaluations.
Targets are clipped to the joint ranges, the tip never aims lower than the press depth
and travels between strokes at a hover height above the table.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any

import numpy as np

from rllib_paper.config import ConfigError, EnvConfig
from rllib_paper.policies.spec import PolicySpec, parse_number
from rllib_paper.sim.kinematics import ARM_JOINTS, FingertipIK
from rllib_paper.sim.observation import FINGERTIP, GOAL_VEC, SHEET_POS, SHEET_QUAT
from rllib_paper.sim.scene import build_kinematic_model
from rllib_paper.sim.task import FrameGeometry, quat_to_yaw, wrap_angle, wrap_half_turn


@dataclass(frozen=True)
class PusherParams:
    press_offset: float = 0.05  # m, how far from the centre a translation stroke may press
    corner_inset: float = 0.02  # m, how far inside both edges a corner pull presses
    turn_speed: float = 0.07  # m/s, finger speed of a corner pull
    turn_gain: float = 1.0  # pull heading offset per rad of yaw still to turn
    max_swing: float = 1.0  # rad, largest pull heading offset from the centre->finger line
    max_turn_steps: int = 40
    ahead_bias: float = 0.0
    steer_gain: float = 0.0  # m of sideways press offset (sheet frame) per rad of yaw error
    steer_limit: float = 0.05
    max_translate: float = 0.08  # m of finger travel per translation stroke, then re-plan
    max_drift: float = 0.12  # rad; a translation stroke that turns the sheet this much further stops
    tape_clearance: float = 0.001  # m; corner pulls never press this close to the tape
    min_turn_gain: float = 0.05  # rad; a corner pull that straightens less than this was ineffective
    max_ineffective_turns: int = 1
    fallback_yaw_tolerance: float = 0.22
    wrong_way_limit: float = 0.06  # rad; a corner pull turning the sheet further off is abandoned
    min_reach: float = 0.12  # m, fingertip distance from the base the arm presses well at
    max_reach: float = 0.34
    hover_height: float = 0.02  # m, fingertip height while moving between strokes
    press_depth: float = 0.004  # m, fingertip target below the table top while pressing (~3 N)
    move_speed: float = 0.45  # m/s, fingertip speed in the air
    descend_speed: float = 0.15  # m/s
    lift_speed: float = 0.15  # m/s
    drag_speed: float = 0.10
    final_yaw_tolerance: float = 0.07  # rad, tighter once the sheet is within final_distance
    final_distance: float = 0.03
    approach_gain: float = 2.0  # 1/s; drag speed is capped at this times the remaining distance
    arrival_tolerance: float = 0.008  # m, in the table plane, before descending
    lift_clearance: float = 0.01  # m, tip height at which the next approach may start
    position_tolerance: float = 0.004  # m, stop dragging this close to the frame centre
    yaw_tolerance: float = 0.12  # rad, leave orientation alone below this
    slip_limit: float = 0.015  # m, re-grasp when the tip has slid this far over the sheet
    max_stroke_steps: int = 150
    tilt: float = 0.5  # rad, jaw axis tilt from vertical, leaning away from the robot
    # rad; while the sheet is farther than final_distance, a corner pull whose heading is more
    # than this off the frame's direction is skipped for a translation stroke (math.pi: never)
    max_turn_detour: float = 1.2

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _SIGNED_PARAMS:
                continue
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"pusher.{f.name}={value!r}: expected a finite number")
            if value < 0:
                raise ConfigError(f"pusher.{f.name}={value!r}: allowed range is [0, inf)")


_SIGNED_PARAMS = {"ahead_bias", "steer_gain"}

# Indices of the values the planner reads from the tolist()ed observation (sim/observation.py).
_SHEET_X, _SHEET_Y = SHEET_POS.start, SHEET_POS.start + 1
_GOAL_X, _GOAL_Y = GOAL_VEC.start, GOAL_VEC.start + 1
_TIP_X, _TIP_Y, _TIP_Z = range(FINGERTIP.start, FINGERTIP.stop)


def pusher_params(spec: PolicySpec) -> PusherParams:
    """``scripted`` or ``scripted?drag_speed=0.12&hover_height=0.03``: PusherParams overrides
    in the policy spec, so eval, train and Tune can vary the base without code edits."""
    if spec.target:
        raise spec.error("the pusher takes no target; write 'scripted' or 'scripted?key=value&...'")
    allowed = {f.name: f.type for f in fields(PusherParams)}
    overrides: dict[str, float | int] = {}
    for key, text in spec.options:
        if key not in allowed:
            raise spec.error(f"pusher.{key}: unknown parameter; allowed: {sorted(allowed)}")
        overrides[key] = parse_number(spec, f"pusher.{key}", text, int if allowed[key] in (int, "int") else float)
    return PusherParams(**overrides)


def make_scripted(spec: PolicySpec, config: EnvConfig) -> ScriptedPusher:
    return ScriptedPusher(config, pusher_params(spec))


def resolve_scripted(spec: PolicySpec) -> dict[str, Any]:
    """Every pusher parameter at its value: a later change of a default changes this record."""
    return dataclasses.asdict(pusher_params(spec))


class Phase(Enum):
    PLAN = 0
    APPROACH = 1
    DESCEND = 2
    DRAG = 3
    LIFT = 5
    HOLD = 6


@dataclass
class _EpisodeState:
    phase: Phase = Phase.PLAN
    q: np.ndarray | None = None  # IK warm start / last joint target
    tip_target: list[float] | None = None  # commanded fingertip position (world)
    press_point: tuple[float, float] | None = None  # world xy where the current stroke presses
    grasp_local: tuple[float, float] | None = None  # press point in the sheet frame at touch-down
    turning: bool = False
    turn_sign: float = 1.0
    turn_start: float = 0.0
    corner: int = -1
    ineffective_turns: int = 0
    solved_for: list[float] | None = None  # the fingertip target st.q was solved for
    failed_corners: set[int] = field(default_factory=set)
    pull_direction: np.ndarray | None = None
    stroke_start: tuple[float, float] | None = None
    stroke_yaw: float = 0.0
    steps_in_phase: int = 0


class ScriptedPusher:
    """Base policy protocol: chunk of 1 target, re-decided every control step."""

    chunk_length = 1
    execution_horizon = 1

    def __init__(self, config: EnvConfig | None = None, params: PusherParams | None = None) -> None:
        self.config = config or EnvConfig()
        self.params = params or PusherParams()
        physics, task = self.config.physics, self.config.task
        self.ik = FingertipIK(build_kinematic_model(physics, task))
        self.dt = physics.substeps * physics.timestep
        self.frame = FrameGeometry(task.frame_xy, task.frame_inner_size, task.success_margin)
        self.paper_size = physics.paper_size
        self.surface_z = physics.paper_half_thickness * 2
        self._home = np.asarray(task.home_qpos, dtype=np.float64)
        fx, fy = task.frame_xy
        ix, iy = task.frame_inner_size[0] / 2, task.frame_inner_size[1] / 2
        ox, oy = ix + task.tape_width, iy + task.tape_width
        self._tape_boxes = [  # (x0, x1, y0, y1) of the four tape strips in the world
            (fx - ox, fx - ix, fy - oy, fy + oy),
            (fx + ix, fx + ox, fy - oy, fy + oy),
            (fx - ix, fx + ix, fy - oy, fy - iy),
            (fx - ix, fx + ix, fy + iy, fy + oy),
        ]
        self._states: list[_EpisodeState] = []

    def reset(self, seed: int | None = None) -> None:
        self._states = []

    def act(self, observations: Mapping[str, np.ndarray]) -> np.ndarray:
        states = np.asarray(observations["state"], dtype=np.float64)
        targets = np.asarray(observations["target"], dtype=np.float64)
        while len(self._states) < len(states):
            self._states.append(_EpisodeState())
        out = np.empty((len(states), 1, 6))
        for row, (obs, target) in enumerate(zip(states, targets, strict=True)):
            out[row, 0] = self._act_one(self._states[row], obs, target)
        return out

    # ------------------------------------------------------------------ control
    def _act_one(self, st: _EpisodeState, obs: np.ndarray, target: np.ndarray) -> np.ndarray:
        """One control step. It runs inside every env step, so it works on Python floats
        (one ``tolist`` of the observation) rather than 2- and 3-vectors, whose numpy calls
        cost more than their arithmetic; the operations and their order are those of the
        vector form, so the targets are the same to the bit."""
        p = self.params
        o = obs.tolist()
        cx, cy = o[_SHEET_X], o[_SHEET_Y]
        yaw = quat_to_yaw(o[SHEET_QUAT])
        ux, uy = (cx + o[_GOAL_X]) - cx, (cy + o[_GOAL_Y]) - cy  # centre -> goal, as goal - centre
        tx, ty, tz = o[_TIP_X], o[_TIP_Y], o[_TIP_Z]  # measured fingertip
        if st.q is None:
            st.q = target.copy()
            st.tip_target = [tx, ty, tz]
        st.steps_in_phase += 1
        yaw_error = wrap_half_turn(yaw)  # how far the sheet is turned from alignment
        distance = math.hypot(ux, uy)

        if st.phase is Phase.PLAN:
            self._plan(st, np.array([cx, cy]), yaw, yaw_error, np.array([ux, uy]), distance)
        if st.phase is Phase.APPROACH:
            aim = [st.press_point[0], st.press_point[1], p.hover_height]
            st.tip_target = _step_toward(st.tip_target, aim, p.move_speed * self.dt)
            # The servos sag a few millimetres under gravity: judge arrival in the table plane.
            arrived = st.tip_target == aim and _norm(tx - aim[0], ty - aim[1]) < p.arrival_tolerance
            if arrived or st.steps_in_phase > 60:
                self._enter(st, Phase.DESCEND)
        elif st.phase is Phase.DESCEND:
            aim = [st.press_point[0], st.press_point[1], -p.press_depth]
            st.tip_target = _step_toward(st.tip_target, aim, p.descend_speed * self.dt)
            touching = tz < self.surface_z + 0.0015
            if (touching and st.tip_target[2] <= -0.5 * p.press_depth) or st.steps_in_phase > 40:
                st.grasp_local = _rotate(tx - cx, ty - cy, -yaw)
                self._enter(st, Phase.DRAG)
        elif st.phase is Phase.DRAG:
            lx, ly = _rotate(tx - cx, ty - cy, -yaw)
            slipped = _norm(lx - st.grasp_local[0], ly - st.grasp_local[1]) > p.slip_limit
            if st.turning:
                # Steer: pull along the current centre->finger line turned toward the needed
                # rotation; the trailing sheet swings its centre behind the pull direction.
                swing = min(max(p.turn_gain * -yaw_error, -p.max_swing), p.max_swing)
                heading = math.atan2(ty - cy, tx - cx) + swing
                dx, dy = math.cos(heading), math.sin(heading)
                speed = p.turn_speed
                overshot = -yaw_error * st.turn_sign < 0.5 * p.yaw_tolerance
                wrong_way = -yaw_error * st.turn_sign > st.turn_start + p.wrong_way_limit
                if wrong_way:
                    st.failed_corners.add(st.corner)
                done = overshot or wrong_way or st.steps_in_phase > p.max_turn_steps
            else:
                travelled = _norm(st.tip_target[0] - st.stroke_start[0], st.tip_target[1] - st.stroke_start[1])
                drifted = abs(yaw_error) > st.stroke_yaw + p.max_drift and distance > 0.02
                done = distance < p.position_tolerance or travelled > p.max_translate or drifted
                scale = max(distance, 1e-9)
                dx, dy = ux / scale, uy / scale
                speed = min(p.drag_speed, p.approach_gain * distance)  # slow down on the final centimetres
            if done or slipped or st.steps_in_phase > p.max_stroke_steps:
                if st.turning:
                    improved = st.turn_start - abs(yaw_error)
                    st.ineffective_turns = st.ineffective_turns + 1 if improved < p.min_turn_gain else 0
                    if improved < 0.0:
                        st.failed_corners.add(st.corner)  # it turned the sheet the wrong way
                self._enter(st, Phase.LIFT)
            else:
                advance = speed * self.dt
                st.tip_target = [st.tip_target[0] + advance * dx, st.tip_target[1] + advance * dy, -p.press_depth]
        elif st.phase is Phase.LIFT:
            aim = [st.tip_target[0], st.tip_target[1], p.hover_height]
            st.tip_target = _step_toward(st.tip_target, aim, p.lift_speed * self.dt)
            lifted = st.tip_target[2] >= p.hover_height and tz > p.lift_clearance
            if lifted or st.steps_in_phase > 10:
                self._enter(st, Phase.PLAN)
        elif st.phase is Phase.HOLD and not self.frame.evaluate((cx, cy), yaw, self.paper_size).success:
            self._enter(st, Phase.PLAN)
        return self._solve(st)

    def _plan(self, st, centre, yaw, yaw_error, to_goal, distance) -> None:
        p = self.params
        if self.frame.evaluate(centre, yaw, self.paper_size).success and distance < 0.01:
            self._enter(st, Phase.HOLD)
            st.tip_target = [st.tip_target[0], st.tip_target[1], p.hover_height]
            return
        tolerance = p.final_yaw_tolerance if distance < p.final_distance else p.yaw_tolerance
        if st.ineffective_turns >= p.max_ineffective_turns:
            # Corner pulls stop working once the sheet lies on the tape (its corners stick);
            # then finish the translation and accept what the tolerance allows.
            tolerance = max(tolerance, p.fallback_yaw_tolerance)
        if abs(yaw_error) > tolerance:
            self._plan_turn(st, centre, yaw, yaw_error, to_goal, distance)
        else:
            self._plan_translate(st, centre, yaw, yaw_error, to_goal, distance)
        self._enter(st, Phase.APPROACH)

    def _plan_translate(self, st, centre, yaw, yaw_error, to_goal, distance) -> None:
        """Translation stroke: press near the centre, never over the tape (a pressed rigid
        sheet bears down hardest under the finger, and over the sticky tape that load holds
        the sheet while the finger slides), shifted sideways to steer the yaw drift."""
        p = self.params
        u = to_goal / max(distance, 1e-9)
        steer = float(np.clip(p.steer_gain * yaw_error, -p.steer_limit, p.steer_limit))
        point = self._press_point_off_tape(centre + np.array(_rotate(0.0, steer, yaw)), u)
        st.press_point = st.stroke_start = (float(point[0]), float(point[1]))
        st.stroke_yaw = abs(yaw_error)
        st.pull_direction = None
        st.turning = False

    def _press_point_off_tape(self, centre: np.ndarray, u: np.ndarray) -> np.ndarray:
        best, best_score = centre, -np.inf
        for offset in np.linspace(-self.params.press_offset, self.params.press_offset, 7):
            point = centre + offset * u
            clearance = min(_distance_to_box(point, box) for box in self._tape_boxes)
            # Clear of the tape first; then ahead of the centre (a pulled sheet trails stably,
            # a pushed one swings away), or central if ahead_bias is 0.
            score = min(clearance, 0.03) + self.params.ahead_bias * offset - 0.1 * abs(offset)
            if score > best_score:
                best, best_score = point, score
        return best

    def _plan_turn(self, st, centre, yaw, yaw_error, to_goal, distance) -> None:
        """Corner pull: a sheet pressed near a corner trails its centre behind the finger, so
        pulling along (corner - centre) turned by the needed rotation swings it into line.
        Of the four corners, take the one whose pull direction heads most toward the frame.

        On a far sheet whose near corners lie on the tape, the usable pulls head sideways or
        back out; taking them undoes the last translation stroke, and alternating the two burns
        the 400 steps (docs/pusher.md, "ping-pong"), so there we translate and turn once the
        sheet is close."""
        p = self.params
        needed = -yaw_error
        goal_heading = math.atan2(to_goal[1], to_goal[0]) if distance > 0.01 else None
        half = 0.5 * np.asarray(self.paper_size) - p.corner_inset
        best = None
        if len(st.failed_corners) >= 4:
            st.failed_corners.clear()
        for index, (sx, sy) in enumerate(((-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0))):
            if index in st.failed_corners:
                continue
            corner = centre + np.array(_rotate(sx * half[0], sy * half[1], yaw))
            reach = math.hypot(corner[0], corner[1])
            clearance = min(_distance_to_box(corner, box) for box in self._tape_boxes)
            if not (p.min_reach <= reach <= p.max_reach) or clearance < p.tape_clearance:
                continue
            offset = corner - centre
            heading = math.atan2(offset[1], offset[0]) + needed
            score = 0.0 if goal_heading is None else abs(wrap_angle(heading - goal_heading))
            score -= 0.3 * (corner[0] < centre[0])  # prefer pulling toward the robot: better reach
            if best is None or score < best[0]:
                best = (score, corner, heading, index)
        far = best is not None and goal_heading is not None and distance > p.final_distance
        if far and abs(wrap_angle(best[2] - goal_heading)) > p.max_turn_detour:
            best = None  # every usable pull would drag the sheet away from the frame: translate now
        if best is None:  # no reachable corner: fall back to translating
            self._plan_translate(st, centre, yaw, yaw_error, to_goal, distance)
            return
        _, corner, heading, st.corner = best
        st.press_point = (float(corner[0]), float(corner[1]))
        st.pull_direction = np.array([math.cos(heading), math.sin(heading)])
        st.turning = True
        st.turn_sign = math.copysign(1.0, needed)
        st.turn_start = abs(needed)

    def _enter(self, st: _EpisodeState, phase: Phase) -> None:
        st.phase = phase
        st.steps_in_phase = 0

    def _solve(self, st: _EpisodeState) -> np.ndarray:
        p = self.params
        x, y, z = st.tip_target
        target = [x, y, max(z, -p.press_depth)]
        if target == st.solved_for:
            return st.q  # the target has not moved: the last solution still holds
        st.solved_for = target
        heading = math.atan2(y, x)
        tilt = math.sin(p.tilt)
        axis = (tilt * math.cos(heading), tilt * math.sin(heading), -math.cos(p.tilt))
        q, _ = self.ik.solve(target, st.q, axis=axis, iterations=4, tolerance=5e-4, axis_tolerance=5e-2)
        q[ARM_JOINTS:] = self._home[ARM_JOINTS:]  # keep the jaws closed into one fingertip
        st.q = q
        return q


def _step_toward(current: list[float], aim: list[float], max_step: float) -> list[float]:
    dx, dy, dz = aim[0] - current[0], aim[1] - current[1], aim[2] - current[2]
    norm = math.sqrt(dx * dx + dy * dy + dz * dz)
    if norm <= max_step:
        return list(aim)
    scale = max_step / norm
    return [current[0] + dx * scale, current[1] + dy * scale, current[2] + dz * scale]


def _norm(dx: float, dy: float) -> float:
    """np.linalg.norm of (dx, dy), the same float: sqrt of the sum of squares in order."""
    return math.sqrt(dx * dx + dy * dy)


def _rotate(x: float, y: float, angle: float) -> tuple[float, float]:
    c, s = math.cos(angle), math.sin(angle)
    return c * x - s * y, s * x + c * y


def _distance_to_box(point: np.ndarray, box: tuple[float, float, float, float]) -> float:
    x0, x1, y0, y1 = box
    dx = max(x0 - point[0], 0.0, point[0] - x1)
    dy = max(y0 - point[1], 0.0, point[1] - y1)
    return math.hypot(dx, dy)
