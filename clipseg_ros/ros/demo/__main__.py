"""`python -m clipseg_ros.ros.demo` (`make demo`)."""

import sys

from clipseg_ros.ros.demo.run_demo import main

sys.exit(main())
