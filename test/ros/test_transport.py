"""Which Fast DDS profile a fusionocc process applies (fusionocc_ros.transport), and that the shipped profiles
are ones Fast DDS accepts (a real participant in a subprocess with each)."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from fusionocc_ros.transport import (
    SHM_PROFILE,
    SOCKET_BUFFER_BYTES,
    UDP_PROFILE,
    apply_transport_profile,
    kernel_socket_buffer_cap,
)

BIG = SOCKET_BUFFER_BYTES
NS = "{http://www.eprosima.com}"


def test_receiver_gets_udp_only_when_the_kernel_allows_large_buffers(tmp_path):
    env: dict[str, str] = {}
    choice = apply_transport_profile("receiver", env, cwd=tmp_path, socket_cap=BIG)
    assert choice.applied and choice.profile == UDP_PROFILE and not choice.warning
    assert env["FASTDDS_DEFAULT_PROFILES_FILE"] == str(UDP_PROFILE)
    assert "udp_large.xml" in choice.description


def test_receiver_falls_back_to_shared_memory_and_says_how_to_lift_a_kernel_cap(tmp_path):
    env: dict[str, str] = {}
    choice = apply_transport_profile("receiver", env, cwd=tmp_path, socket_cap=212_992)
    assert choice.profile == SHM_PROFILE and env["FASTDDS_DEFAULT_PROFILES_FILE"] == str(SHM_PROFILE)
    assert "212992" in choice.warning and "sysctl -w net.core.rmem_max=" in choice.warning


def test_sender_gets_large_shared_memory_segments(tmp_path):
    env: dict[str, str] = {}
    choice = apply_transport_profile("sender", env, cwd=tmp_path, socket_cap=BIG)
    assert choice.profile == SHM_PROFILE and not choice.warning


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"FASTDDS_DEFAULT_PROFILES_FILE": "/etc/mine.xml"}, "/etc/mine.xml"),
        ({"FASTRTPS_DEFAULT_PROFILES_FILE": "/etc/old.xml"}, "/etc/old.xml"),
        ({"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}, "rmw_cyclonedds_cpp"),
        ({"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"}, "LARGE_DATA"),
        ({"FUSIONOCC_DDS_PROFILE": "none"}, "FUSIONOCC_DDS_PROFILE=none"),
    ],
)
def test_the_users_own_middleware_configuration_wins(tmp_path, env, reason):
    before = dict(env)
    choice = apply_transport_profile("receiver", env, cwd=tmp_path, socket_cap=BIG)
    assert not choice.applied and choice.profile is None and reason in choice.description
    assert env == before  # nothing changed


def test_a_default_profile_in_the_working_directory_wins(tmp_path):
    (tmp_path / "DEFAULT_FASTDDS_PROFILES.xml").write_text("<dds/>")
    env: dict[str, str] = {}
    choice = apply_transport_profile("receiver", env, cwd=tmp_path, socket_cap=BIG)
    assert not choice.applied and "FASTDDS_DEFAULT_PROFILES_FILE" not in env


def test_fusionocc_dds_profile_names_a_file_or_fails(tmp_path):
    mine = tmp_path / "mine.xml"
    mine.write_text("<dds/>")
    env = {"FUSIONOCC_DDS_PROFILE": str(mine)}
    choice = apply_transport_profile("receiver", env, cwd=tmp_path, socket_cap=BIG)
    assert choice.profile == mine and env["FASTDDS_DEFAULT_PROFILES_FILE"] == str(mine)
    with pytest.raises(FileNotFoundError, match="no such profile"):
        apply_transport_profile("receiver", {"FUSIONOCC_DDS_PROFILE": str(tmp_path / "gone.xml")}, cwd=tmp_path)


def test_kernel_socket_buffer_cap_reads_proc_format(tmp_path):
    file = tmp_path / "rmem_max"
    file.write_text("4194304\n")
    assert kernel_socket_buffer_cap(file) == 4194304
    assert kernel_socket_buffer_cap(tmp_path / "missing") is None


@pytest.mark.parametrize("profile", [UDP_PROFILE, SHM_PROFILE])
def test_shipped_profiles_ask_for_what_the_module_says(profile: Path):
    root = ET.parse(profile).getroot()
    sizes = [int(e.text) for tag in ("sendBufferSize", "receiveBufferSize") for e in root.iter(NS + tag)]
    assert sizes and all(size == SOCKET_BUFFER_BYTES for size in sizes)
    types = [e.text for e in root.iter(NS + "type")]
    assert ("SHM" in types) == (profile == SHM_PROFILE)
    default = [p for p in root.iter(NS + "participant") if p.get("is_default_profile") == "true"]
    assert len(default) == 1
    assert [e.text for e in default[0].iter(NS + "useBuiltinTransports")] == ["false"]


@pytest.mark.parametrize("profile", [UDP_PROFILE, SHM_PROFILE])
def test_fast_dds_accepts_each_shipped_profile(profile: Path):
    """A real rclpy participant under each profile starts and talks to itself (Fast DDS rejects a profile it
    cannot parse by failing rclpy.init / node creation)."""
    code = (
        "import rclpy, time\n"
        "from std_msgs.msg import String\n"
        "rclpy.init(domain_id=211)\n"
        "n = rclpy.create_node('profile_probe')\n"
        "got = []\n"
        "n.create_subscription(String, 'probe', got.append, 10)\n"
        "p = n.create_publisher(String, 'probe', 10)\n"
        "end = time.time() + 10\n"
        "while not got and time.time() < end:\n"
        "    p.publish(String(data='x')); rclpy.spin_once(n, timeout_sec=0.1)\n"
        "print('received', len(got))\n"
    )
    env = {k: v for k, v in os.environ.items() if "PROFILES_FILE" not in k and k != "RMW_IMPLEMENTATION"}
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "received" in result.stdout and "received 0" not in result.stdout
    assert "Error" not in result.stderr, result.stderr
