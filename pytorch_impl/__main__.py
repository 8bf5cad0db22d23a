import sys

from pytorch_impl.cli import main

sys.exit(main())
