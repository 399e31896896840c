"""Which DDS transport profile a fusionocc process uses, chosen before rclpy starts the middleware.

Fast DDS's defaults lose best-effort sensor messages between processes (measured: 0-2 of 8 lidar sweeps of a
converted bag reached a best-effort subscriber in another process; docs/node.md): the shared-memory transport
carries a message in the writer's 512 KiB segment, which a 0.7 MB sweep never fits, and over UDP a fragmented
message is lost when the 208 KiB socket receive buffer overflows. The project ships two Fast DDS profiles
(`fusionocc_ros/dds/*.xml`) and applies one when the user has not chosen their own:

- receivers (the occupancy node): `udp_large.xml`, UDP only with 4 MiB buffers, so that every writer
  (`ros2 bag play`, a camera driver with default settings, `fusionocc replay`) reaches it without loss; where
  the kernel caps socket buffers below that (`net.core.rmem_max`), `shm_large.xml` instead, and a warning
  that says how to lift the cap;
- senders (`fusionocc replay`, the launch file's bag player): `shm_large.xml`, shared memory with 32 MiB
  segments plus the same UDP transport.

The user's choice always wins: a profile named by FASTDDS_DEFAULT_PROFILES_FILE (or Fast DDS 2's
FASTRTPS_DEFAULT_PROFILES_FILE), a DEFAULT_FASTDDS_PROFILES.xml in the working directory, a
FASTDDS_BUILTIN_TRANSPORTS choice, another RMW_IMPLEMENTATION, or FUSIONOCC_DDS_PROFILE (a path, or `none`
to apply nothing). Fast DDS reads these variables when rclpy initialises, so `apply_transport_profile` must
run before `rclpy.init`.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

PROFILE_DIR = Path(__file__).resolve().parent / "dds"
UDP_PROFILE = PROFILE_DIR / "udp_large.xml"
SHM_PROFILE = PROFILE_DIR / "shm_large.xml"
SOCKET_BUFFER_BYTES = 4 * 1024 * 1024  # what both profiles ask for; keep equal to the XML files
PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
OVERRIDE_VARIABLE = "FUSIONOCC_DDS_PROFILE"
RMEM_MAX = Path("/proc/sys/net/core/rmem_max")

Role = Literal["receiver", "sender"]


@dataclass(frozen=True)
class TransportChoice:
    """What `apply_transport_profile` decided.

    Attributes:
        profile: the Fast DDS profile file now in effect, None when fusionocc applied none.
        applied: True when fusionocc set it (False: the user's own choice, or not Fast DDS).
        description: one line for the start-up log ("transport: ...").
        warning: a problem the user can fix (a kernel socket-buffer cap), or ''.
    """

    profile: Path | None
    applied: bool
    description: str
    warning: str = ""


def kernel_socket_buffer_cap(path: Path = RMEM_MAX) -> int | None:
    """net.core.rmem_max in bytes (the largest receive buffer a process may ask for), None when unknown."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _user_choice(environ: MutableMapping[str, str], cwd: Path) -> str | None:
    """Why the user's own configuration applies, or None when fusionocc may apply its profile."""
    rmw = environ.get("RMW_IMPLEMENTATION", "")
    if rmw and not rmw.startswith("rmw_fastrtps"):
        return f"{rmw} (RMW_IMPLEMENTATION); fusionocc's Fast DDS profiles do not apply"
    for name in PROFILE_VARIABLES:
        if environ.get(name):
            return f"Fast DDS with the user's profile {environ[name]} ({name})"
    if (cwd / "DEFAULT_FASTDDS_PROFILES.xml").is_file():
        return f"Fast DDS with the user's profile {cwd / 'DEFAULT_FASTDDS_PROFILES.xml'} (working directory)"
    if environ.get("FASTDDS_BUILTIN_TRANSPORTS"):
        return f"Fast DDS builtin transports {environ['FASTDDS_BUILTIN_TRANSPORTS']} (FASTDDS_BUILTIN_TRANSPORTS)"
    return None


def apply_transport_profile(
    role: Role,
    environ: MutableMapping[str, str] | None = None,
    *,
    cwd: Path | None = None,
    socket_cap: int | None = -1,
) -> TransportChoice:
    """Points Fast DDS at the project's profile for `role` unless the user configured the middleware.

    Args:
        role: "receiver" (the node) or "sender" (replay, bag players).
        environ: the environment to read and update (default: os.environ, which Fast DDS reads).
        cwd: the working directory Fast DDS looks in for DEFAULT_FASTDDS_PROFILES.xml (default: os.getcwd()).
        socket_cap: net.core.rmem_max to assume (-1: read it from /proc; None: unknown).
    """
    environ = os.environ if environ is None else environ
    cwd = Path.cwd() if cwd is None else cwd
    cap = kernel_socket_buffer_cap() if socket_cap == -1 else socket_cap
    override = environ.get(OVERRIDE_VARIABLE, "")
    if override.lower() == "none":
        return TransportChoice(None, False, f"middleware defaults ({OVERRIDE_VARIABLE}=none)")
    user = None if override else _user_choice(environ, cwd)
    if user is not None:
        return TransportChoice(None, False, user)
    capped = cap is not None and cap < SOCKET_BUFFER_BYTES
    warning = ""
    if override:
        profile = Path(override).expanduser()
        if not profile.is_file():
            raise FileNotFoundError(f"{OVERRIDE_VARIABLE}={override}: no such profile file")
        why = f"{OVERRIDE_VARIABLE}"
    elif role == "receiver" and not capped:
        profile, why = UDP_PROFILE, "UDP only, 4 MiB socket buffers: every writer reaches the node over UDP"
    else:
        profile = SHM_PROFILE
        why = "shared memory with 32 MiB segments + UDP"
        if role == "receiver":
            warning = (
                f"the kernel caps socket receive buffers at {cap} bytes (net.core.rmem_max), below the "
                f"{SOCKET_BUFFER_BYTES} needed to receive large best-effort messages over UDP: writers "
                "without fusionocc's profile (a driver, plain `ros2 bag play`) may lose sweeps. Fix: "
                f"sudo sysctl -w net.core.rmem_max={SOCKET_BUFFER_BYTES}, or give the writer "
                f"FASTDDS_DEFAULT_PROFILES_FILE={SHM_PROFILE}"
            )
    environ[PROFILE_VARIABLES[0]] = str(profile)
    return TransportChoice(profile, True, f"Fast DDS with fusionocc's profile {profile.name} ({why})", warning)
