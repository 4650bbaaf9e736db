# packaging/: distribution packages.
EXTRA_DIST += packaging
