"""``python -m bnfold``: the same as the ``bnfold`` console script."""

from bnfold.cli import main

raise SystemExit(main())
