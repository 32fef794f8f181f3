import sys

from imu_anon.cli import main

sys.exit(main())
