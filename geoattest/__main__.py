"""``python -m geoattest`` is the ``geoattest`` command."""

from geoattest.cli import main

main()
