"""`python -m fusionocc_ros.bench [args]`: the same as `fusionocc bench [args]`."""
import sys

from fusionocc_ros.bench.cli import main_args, run

if __name__ == "__main__":  # not when a package walker imports this module
    sys.exit(run(main_args(sys.argv[1:])))
