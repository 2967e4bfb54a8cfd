import sys

from labsupport.runner import main

sys.exit(main())
