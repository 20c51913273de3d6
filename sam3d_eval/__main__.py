import sys

from sam3d_eval.cli.main import main

sys.exit(main())
