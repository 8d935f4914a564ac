"""``python -m clipper_core.runtime``: run one model replica (see :mod:`clipper_core.runtime`)."""

from clipper_core.runtime import main

raise SystemExit(main())
