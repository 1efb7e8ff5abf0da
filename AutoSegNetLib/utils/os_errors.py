"""Short, plain reasons for file-system errors, for messages such as "cannot write predictions to X: <reason>"."""

from __future__ import annotations

import errno

_REASONS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "the file system is read-only",
    errno.ENOSPC: "no space left on the device",
    getattr(errno, "EDQUOT", -1): "the disk quota is exceeded",  # not defined on every platform
    errno.EEXIST: "a file of that name exists where a folder is needed",
    errno.ENOTDIR: "a file of that name exists where a folder is needed",
    errno.EISDIR: "a folder of that name exists where a file is needed",
    errno.ENAMETOOLONG: "the path is too long",
}


def describe_os_error(error: OSError) -> str:
    """``"permission denied"``, ``"no space left on the device"``, ... for ``error``; its own text otherwise."""
    if error.errno in _REASONS:
        return _REASONS[error.errno]
    return (error.strerror or str(error) or type(error).__name__).lower()
