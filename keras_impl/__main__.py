import sys

from keras_impl.cli import main

sys.exit(main())
