"""The motor level refuses waypoints no arm can follow (before they reach a model)."""
import numpy as np
import pytest

from hybrid_vla_ros.motor.features import WaypointTracker
from hybrid_vla_ros.nodes.conversions import robot_kinematics

GOOD = np.array([0.4, 0.0, 0.3, 0.0, 0.0, 0.0, 1.0, 0.0])


@pytest.mark.parametrize('robot', ['arm7', 'arm6'])
def test_reach_bounds_every_configuration(robot):
    kin = robot_kinematics(robot)
    rng = np.random.default_rng(0)
    reach = kin.reach()
    for _ in range(200):
        q = rng.uniform(kin.lower, kin.upper)
        assert np.linalg.norm(kin.fk(q)[0]) <= reach + 1e-9


@pytest.mark.parametrize('change,match', [
    ({2: np.nan}, 'finite'), ({6: 0.0}, 'unit quaternion'), ({7: 1.5}, 'gripper'),
    ({0: 5.0}, 'beyond the arm'),
])
def test_bad_waypoints_are_refused(change, match):
    t = WaypointTracker(reach=1.3)
    t.set_waypoints([GOOD])
    bad = GOOD.copy()
    for i, v in change.items():
        bad[i] = v
    with pytest.raises(ValueError, match=match):
        t.set_waypoints([GOOD, bad])
    assert len(t.waypoints) == 1  # the previous waypoints are kept
    with pytest.raises(ValueError, match='at most'):
        t.set_waypoints([GOOD] * (WaypointTracker.MAX_WAYPOINTS + 1))
