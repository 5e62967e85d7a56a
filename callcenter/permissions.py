"""File permissions of what the service and Asterisk write: recordings are personal
data, readable by the owner and the group (the service and Asterisk), never by
other users of the machine.

Every process that writes recordings runs with ``SERVICE_UMASK`` (the service's
commands call :func:`restrict_umask` first; the Asterisk sandbox and the docker
image start Asterisk with it), and the recordings folder has ``RECORDINGS_DIR_MODE``
(:func:`prepare_recordings_dir`, also when it existed wider).
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("callcenter.permissions")

# New files 0640, new folders 0750: nothing for "other".
SERVICE_UMASK = 0o027
RECORDINGS_DIR_MODE = 0o750


def restrict_umask() -> int:
    """Set this process's umask to ``SERVICE_UMASK`` (keeping any bits it had on top);
    returns the previous one."""
    previous = os.umask(SERVICE_UMASK)
    os.umask(previous | SERVICE_UMASK)
    return previous


def prepare_recordings_dir(path: Path) -> Path:
    """Create the recordings folder with mode 0750, or take away from an existing one
    whatever 0750 does not allow (a 0777 folder becomes 0750, a 0700 one stays).
    Raises OSError when it cannot be created; an existing folder owned by someone
    else that cannot be changed is only warned about."""
    path = Path(path)
    if not path.is_dir():
        path.mkdir(parents=True, mode=RECORDINGS_DIR_MODE, exist_ok=True)
        os.chmod(path, RECORDINGS_DIR_MODE)  # whatever the umask was
        return path
    mode = stat.S_IMODE(path.stat().st_mode)
    excess = mode & 0o777 & ~RECORDINGS_DIR_MODE  # set-group-id and sticky bits stay
    if excess:
        try:
            os.chmod(path, mode & ~excess)
        except PermissionError:
            log.warning("recordings folder %s has mode %o and is not ours to restrict",
                        path, mode)
        else:
            log.info("recordings folder %s: mode %o -> %o", path, mode, mode & ~excess)
    return path
