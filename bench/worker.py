"""``python -m bench.worker <roles>``: ``tenantctl run <roles>`` inside the run's namespace."""

import sys

import bench  # noqa: F401  # applies the namespace before tenantctl imports the consumers
from tenantctl.cli import main

if __name__ == "__main__":
    sys.argv = ["tenantctl", "run", *sys.argv[1:]]
    main()
