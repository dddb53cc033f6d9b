"""Point the CMake exports of the PyPI ROS 2 wheels at this Python's headers.

The wheels are built in a manylinux container and their exported targets name include
directories that exist only there (/opt/python/cp311-cp311/...). rosidl's Python generator
links against those targets, so CMake fails until the paths name this interpreter's
headers and numpy's. Idempotent: a second run finds nothing to rewrite.
"""

import pathlib
import sys
import sysconfig

import numpy

BUILD_PREFIX = "/opt/python/cp311-cp311"
REWRITES = {
    f"{BUILD_PREFIX}/lib/python3.11/site-packages/numpy/_core/include": numpy.get_include(),
    f"{BUILD_PREFIX}/include/python3.11": sysconfig.get_paths()["include"],
}


def main(prefix: str) -> int:
    changed = 0
    for path in pathlib.Path(prefix, "share").glob("*/cmake/*.cmake"):
        text = path.read_text()
        new = text
        for old, replacement in REWRITES.items():
            new = new.replace(old, replacement)
        if new != text:
            path.write_text(new)
            changed += 1
    print(f"fix_ros_wheel_cmake: rewrote {changed} file(s) under {prefix}/share")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else sys.prefix))
