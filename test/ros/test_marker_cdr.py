"""The numpy CDR MarkerArray equals the message built from rclpy objects, and publishes as bytes."""
import numpy as np
import pytest

pytest.importorskip("rclpy")
from builtin_interfaces.msg import Time
from rclpy.serialization import deserialize_message, serialize_message
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from fusionocc_core.occ3d import FREE_LABEL, GRID_SHAPE
from fusionocc_ros.conversions import occupancy_to_marker_array
from fusionocc_ros.marker_cdr import cdr_layout_matches, marker_array_cdr


def _labels(occupied: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = np.full(GRID_SHAPE, FREE_LABEL, dtype=np.uint8)
    labels.reshape(-1)[rng.choice(labels.size, occupied, replace=False)] = rng.integers(0, 17, occupied)
    return labels


def test_layout_matches_the_installed_visualization_msgs():
    assert cdr_layout_matches()


@pytest.mark.parametrize("occupied", [1, 2000])
@pytest.mark.parametrize("frame_id", ["ego", "base_link", "b", "base_footprint", "map1234"])
def test_cdr_bytes_deserialise_to_the_object_built_message(occupied, frame_id):
    """Frame ids of several lengths move every later field across alignment boundaries (the fixed parts of a
    marker are cached per offset modulo 8); each case runs twice, the second time from the cache."""
    labels = _labels(occupied, seed=occupied)
    header = Header(stamp=Time(sec=1700000000, nanosec=123456789), frame_id=frame_id)
    expected, _ = occupancy_to_marker_array(labels, header=header, max_cubes=labels.size, alpha=0.5,
                                            cube_scale=0.9)
    indices = np.argwhere(labels != FREE_LABEL)
    for _ in range(2):
        data = marker_array_cdr(indices, labels[tuple(indices.T)], sec=1700000000, nanosec=123456789,
                                frame_id=frame_id, alpha=0.5, cube_scale=0.9)
        assert deserialize_message(data, MarkerArray) == deserialize_message(serialize_message(expected),
                                                                             MarkerArray)


def test_a_wrong_field_value_is_detected():
    labels = _labels(50, seed=3)
    header = Header(stamp=Time(sec=1, nanosec=2), frame_id="ego")
    expected, _ = occupancy_to_marker_array(labels, header=header)
    indices = np.argwhere(labels != FREE_LABEL)
    data = marker_array_cdr(indices, labels[tuple(indices.T)], sec=1, nanosec=2, frame_id="ego", alpha=0.7)
    assert deserialize_message(data, MarkerArray) != deserialize_message(serialize_message(expected), MarkerArray)


def test_an_empty_grid_gives_only_the_deleteall_marker():
    indices = np.zeros((0, 3), dtype=np.int64)
    message = deserialize_message(
        marker_array_cdr(indices, np.zeros(0, np.uint8), sec=1, nanosec=0, frame_id="ego"), MarkerArray)
    assert len(message.markers) == 1 and message.markers[0].action == message.markers[0].DELETEALL
